"""Benchmark the server's memory: resident memory (RSS) of every process of `bentoml serve` (the
supervisor and its workers) after warm-up and after a mixed load, against the straightforward
alternative (`scripts/baseline_server.py`: FastAPI + `transformers.pipeline`) under the same load.

Model: the default recipe's checkpoint (`fused`: the default small model with its openSMILE
ComParE_2016 functionals head; random weights, which memory does not depend on). Load: `--requests`
uploads at concurrency 8, of 3-s clips at 16 and 44.1 kHz, 20-s clips at 48 kHz and 60-s clips,
answered whole, as fixed windows and as speech segments, then six 10-s live streams on `/stream`
(the alternative has neither timelines nor streams: it gets the same uploads whole). Our server runs
from `--python` (the serving install's interpreter, for the deployable); the alternative needs the
training install (torch, transformers).

    .venv/bin/python scripts/bench_memory.py --python <serving venv>/bin/python   # about 3 minutes

Also printed: our cold start, from `bentoml serve` to `/readyz` answering 200 (its warm-up done).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
import soundfile as sf
from bench_serve import make_checkpoint
from httpx_ws import connect_ws
from servers import REPO_ROOT, alternative_server, cpu_model, export_to_store, service_process

from pipeline.data.synth import SAMPLING_RATE, make_speakers, synthesize_utterance

EMOTIONS = ["angry", "happy", "neutral", "sad"]
CLIPS = [(3, 16_000), (3, 44_100), (20, 48_000), (60, 16_000)]  # seconds, sampling rate
OPTIONS = [{}, {"segments": "vad"}, {"window_s": "2"}]
CONCURRENCY, STREAMS, STREAM_S = 8, 6, 10


def speech(seconds: float, rate: int, seed: int) -> np.ndarray:
    """Synthetic utterances with pauses, `seconds` long at `rate`."""
    rng = np.random.default_rng(seed)
    speaker = make_speakers(1, seed=seed)[0]
    parts, total = [], 0
    while total < seconds * SAMPLING_RATE:
        parts += [synthesize_utterance(speaker, EMOTIONS[len(parts) % 4], rng), np.zeros(SAMPLING_RATE // 2)]
        total += len(parts[-2]) + len(parts[-1])
    wave = np.concatenate(parts)[: round(seconds * SAMPLING_RATE)].astype(np.float32)
    return np.interp(np.arange(round(seconds * rate)) * SAMPLING_RATE / rate, np.arange(len(wave)), wave)


def wav(wave: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def tree_rss(pid: int) -> list[tuple[str, float]]:
    """(name, RSS MiB) of process `pid` and each of its descendants."""
    root = psutil.Process(pid)
    found = []
    for proc in [root, *root.children(recursive=True)]:
        try:
            name = " ".join(proc.cmdline()[1:4])[:60]
            found.append((name, proc.memory_info().rss / 2**20))
        except psutil.NoSuchProcess:
            continue
    return found


async def uploads(url: str, clips: list[bytes], requests: int, timelines: bool) -> int:
    """`requests` uploads, CONCURRENCY in flight, cycling through clips (and options); the count of
    200 answers."""
    gate, answered = asyncio.Semaphore(CONCURRENCY), 0

    async def one(client: httpx.AsyncClient, i: int) -> None:
        nonlocal answered
        async with gate:
            data = OPTIONS[i % len(OPTIONS)] if timelines else {}
            files = {"audio": ("clip.wav", clips[i % len(clips)])}
            response = await client.post(url, files=files, data=data)
            answered += response.status_code == 200

    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=CONCURRENCY)) as client:
        await asyncio.gather(*(one(client, i) for i in range(requests)))
    return answered


def stream(url: str, wave: np.ndarray) -> int:
    """One live stream of `wave` (16 kHz) in 0.25-s chunks; the updates received."""
    pcm = (np.clip(wave, -1, 1) * 32767).astype("<i2")
    with connect_ws(url) as ws:
        ws.send_text(json.dumps({"sampling_rate": SAMPLING_RATE, "format": "pcm16"}))
        ws.receive_json()
        for at in range(0, len(pcm), SAMPLING_RATE // 4):
            ws.send_bytes(pcm[at : at + SAMPLING_RATE // 4].tobytes())
        ws.send_text(json.dumps({"type": "end"}))
        while (message := ws.receive_json())["type"] != "summary":
            pass  # an update
        return message["updates"]


def line(server: str, phase: str, rss: list[tuple[str, float]]) -> str:
    parts = " + ".join(f"{mib:.0f}" for _, mib in rss)
    return f"| {server} | {phase} | {parts} | {sum(m for _, m in rss):.0f} | {max(m for _, m in rss):.0f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--python", default=sys.executable, help="the interpreter that runs our server")
    parser.add_argument("--out", default=str(REPO_ROOT / "runs" / "bench"))
    args = parser.parse_args()
    clips = [wav(speech(seconds, rate, i), rate) for i, (seconds, rate) in enumerate(CLIPS)]
    # 70 % short clips, as a service sees them most
    mix = [clips[0]] * 4 + [clips[1]] * 3 + [clips[2], clips[3]]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = make_checkpoint("fused", Path(tmp) / "fused")
        home = Path(tmp) / "bentoml"
        tag = export_to_store(checkpoint, home)
        began = time.monotonic()
        with service_process(tag, home, python=args.python) as service:
            cold_start = time.monotonic() - began
            rows.append(line("ours", "after warm-up", tree_rss(service.pid)))
            done = asyncio.run(uploads(f"{service.url}/classify", mix, args.requests, timelines=True))
            ws_url = service.url.replace("http", "ws") + "/stream"
            updates = [stream(ws_url, speech(STREAM_S, SAMPLING_RATE, 10 + k)) for k in range(STREAMS)]
            rows.append(line("ours", f"after {done} requests, {len(updates)} streams", tree_rss(service.pid)))
        with alternative_server(checkpoint, Path(tmp) / "alternative.log") as (url, pid):
            asyncio.run(uploads(f"{url}/classify", clips[:1], 2, timelines=False))
            rows.append(line("alternative", "after warm-up", tree_rss(pid)))
            done = asyncio.run(uploads(f"{url}/classify", mix, args.requests, timelines=False))
            rows.append(line("alternative", f"after {done} requests", tree_rss(pid)))
    lines = [
        f"Server memory, RSS in MiB ({cpu_model()}; ours run by {args.python}):",
        "",
        "| server | when | processes | total | largest |",
        "|---|---|---|---|---|",
        *rows,
    ]
    ours, alternative = float(rows[1].split("|")[4]), float(rows[3].split("|")[4])
    lines += [
        "",
        f"after the load, ours / alternative: {ours / alternative:.2f}x the memory",
        f"our cold start to /readyz 200 (warm-up included): {cold_start:.1f} s",
    ]
    print("\n".join(lines))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "memory.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
