"""Benchmark serving: requests per second and latency percentiles of our BentoML service against the
straightforward alternative, in one run, on loopback, with the same model and clips.

- ours: `bentoml serve service.service:EmotionClassifier` (one process: request threads decode,
  the model runs on its own thread and merges requests that arrive while it is busy where that
  measurably pays) with each of --servers, a backend and a precision (SER_BACKEND: onnx or torch;
  SER_PRECISION: fp32, bf16, int8; the default on a CPU, `auto`, is ONNX Runtime at fp32), run by
  `--python` (default this interpreter; the serving install's, without torch, for the deployable);
- alternative: `transformers.pipeline("audio-classification")` called per request behind a minimal
  FastAPI app (`scripts/baseline_server.py`, uvicorn, FastAPI's thread pool).

Models: `small` (the default small model of `ModelConfig`, a Wav2Vec2-BERT on log-mel filter banks),
`fused` (the same with the default recipe's functionals head: openSMILE ComParE_2016 functionals and
a linear model, whose cost per clip is printed; the alternative runs its network alone) and `base`
(wav2vec2-base sized: the `Wav2Vec2Config()` defaults, 95 M parameters, group-norm encoder without
attention mask, as facebook/wav2vec2-base), random weights (speed does not depend on them).
Clips: 3-second synthetic speech, 16 kHz mono WAV. For each concurrency level, a bounded load
generator sends a fixed number of requests, at most `concurrency` in flight, after two warm-up
requests; only one server runs at a time.

Serving overhead: our median single-request latency (concurrency 1) against the median raw PyTorch
forward (the stock feature extractor + `model(**inputs)`, at the same precision, with the server's
allocator settings) on the same clip in this process, torch's default threads. Same answers: the
largest difference between our probabilities and the alternative's on the clips (models without
a head, whose answer is the network's). Writes Markdown
tables and a plot to --out, with the CPU model.

    .venv/bin/python scripts/bench_serve.py     # small and base, 5 settings: about 15 minutes on 2 cores
    .venv/bin/python scripts/bench_serve.py --models small,base --servers onnx:fp32 --python venv/bin/python
    .venv/bin/python scripts/bench_serve.py --models small,fused --servers onnx:fp32
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf
import torch
from servers import REPO_ROOT, alternative_server, cpu_model, export_to_store, running_service
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

from pipeline.config import ModelConfig
from pipeline.data.synth import SAMPLING_RATE, make_speakers, synthesize_utterance
from pipeline.functionals import feature_count
from pipeline.fusion import FunctionalsHead
from pipeline.inference.memory import retain_freed_memory
from pipeline.inference.predictor import Predictor
from pipeline.model import build_feature_extractor, build_model

LABELS = ["angry", "happy", "neutral", "sad"]
SERVERS = ["onnx:fp32", "torch:fp32", "onnx:int8", "torch:bf16", "torch:int8"]
DEFAULT_SERVER = "onnx:fp32"  # SER_BACKEND=auto and SER_PRECISION=auto on a CPU
CLIP_SECONDS = 3.0


@dataclass
class Level:
    server: str
    concurrency: int
    requests_per_s: float
    latencies_ms: list[float]

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q))


def make_checkpoint(kind: str, directory: Path) -> Path:
    """The default small model alone (`small`) or with the default recipe's functionals head
    (`fused`: openSMILE ComParE_2016 + a linear model), or a wav2vec2-base sized model (`base`), with
    random weights and 4 labels."""
    torch.manual_seed(0)
    if kind in ("small", "fused"):
        build_model(ModelConfig(), LABELS).save_pretrained(directory, safe_serialization=True)
        build_feature_extractor(ModelConfig()).save_pretrained(directory)
        if kind == "fused":
            rng = np.random.default_rng(0)
            x, y = rng.normal(size=(40, feature_count("compare"))), np.arange(40) % len(LABELS)
            FunctionalsHead.fit(x, y, len(LABELS), "compare", SAMPLING_RATE, 0.5).save(directory)
        return directory
    config = Wav2Vec2Config(
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={n: i for i, n in enumerate(LABELS)},
    )
    Wav2Vec2ForSequenceClassification(config).save_pretrained(directory, safe_serialization=True)
    Wav2Vec2FeatureExtractor(return_attention_mask=False, do_normalize=True).save_pretrained(directory)
    return directory


def make_clips(n: int) -> list[bytes]:
    """`n` WAV files of exactly 3 s of synthetic speech by different speakers and emotions."""
    clips = []
    for i, speaker in enumerate(make_speakers(n, seed=7)):
        rng = np.random.default_rng([7, i])
        emotion = LABELS[i % len(LABELS)]
        wave = np.concatenate([synthesize_utterance(speaker, emotion, rng) for _ in range(4)])
        buffer = io.BytesIO()
        sf.write(buffer, wave[: int(CLIP_SECONDS * SAMPLING_RATE)], SAMPLING_RATE, format="WAV")
        clips.append(buffer.getvalue())
    return clips


def head_ms(checkpoint: Path, clip: bytes, repeats: int = 7) -> float | None:
    """Median time of the functionals head (openSMILE functionals + the linear model) on one clip,
    in this process; None without a head."""
    head = Predictor.from_pretrained(checkpoint, precision="fp32").head
    if head is None:
        return None
    wave, _ = sf.read(io.BytesIO(clip), dtype="float32")
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        head.log_probabilities([wave])
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times[1:])


def raw_forward_ms(checkpoint: Path, clip: bytes, precision: str, repeats: int = 7) -> float:
    """Median time of PyTorch's forward on one clip (stock feature extractor and `model(**inputs)`),
    in this process."""
    predictor = Predictor.from_pretrained(checkpoint, precision=precision, backend="torch")
    extractor, model = predictor.front_end.extractor, predictor.classifier.model
    wave, _ = sf.read(io.BytesIO(clip), dtype="float32")
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        with torch.inference_mode():
            model(**extractor([wave], sampling_rate=SAMPLING_RATE, return_tensors="pt"))
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times[1:])


async def load(url: str, clips: list[bytes], requests: int, concurrency: int) -> tuple[float, list[float]]:
    """Send `requests` uploads with at most `concurrency` in flight; (requests/s, latencies in ms)."""
    gate = asyncio.Semaphore(concurrency)
    latencies = []

    async def one(client: httpx.AsyncClient, i: int) -> None:
        async with gate:
            start = time.perf_counter()
            response = await client.post(url, files={"audio": (f"clip{i}.wav", clips[i % len(clips)])})
            latencies.append((time.perf_counter() - start) * 1000)
            if response.status_code != 200:
                raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:300]}")

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        for i in range(2):
            await one(client, i)  # warm-up: connections and first-call costs
        latencies.clear()
        start = time.perf_counter()
        await asyncio.gather(*(one(client, i) for i in range(requests)))
        return requests / (time.perf_counter() - start), latencies


def answers(url: str, clips: list[bytes]) -> np.ndarray:
    """(clips, labels) the probabilities a server answers for `clips`, labels in LABELS order."""
    rows = []
    for i, clip in enumerate(clips):
        scores = httpx.post(url, files={"audio": (f"clip{i}.wav", clip)}, timeout=600).json()["scores"]
        rows.append([scores[label] for label in LABELS])
    return np.array(rows)


def measure(server: str, url: str, clips: list[bytes], requests: int, levels: list[int]) -> list[Level]:
    results = []
    for concurrency in levels:
        rps, latencies = asyncio.run(load(url, clips, requests, concurrency))
        results.append(Level(server, concurrency, rps, latencies))
        print(
            f"  {server:<22} c={concurrency:<3} {rps:6.2f} req/s  p50 {np.percentile(latencies, 50):7.0f} ms",
            flush=True,
        )
    return results


# (the levels measured, raw forward ms by precision, largest answer difference by server of ours)
Measured = tuple[list[Level], dict[str, float], dict[str, float]]


def bench_model(kind: str, args, clips: list[bytes], tmp: Path) -> Measured:
    checkpoint = make_checkpoint(kind, tmp / kind / "checkpoint")
    precisions = dict.fromkeys(server.split(":")[1] for server in args.servers)
    raw = {p: raw_forward_ms(checkpoint, clips[0], p) for p in precisions}
    print(f"{kind}: raw forward per 3-s clip, ms: {raw}", flush=True)
    head = head_ms(checkpoint, clips[0])
    if head is not None:
        print(
            f"{kind}: the functionals head per 3-s clip (openSMILE + linear model), ms: {head:.1f}",
            flush=True,
        )
    home = tmp / kind / "bentoml"
    tag = export_to_store(checkpoint, home)
    results, probabilities = [], {}
    for server in args.servers:
        backend, precision = server.split(":")
        env = {"SER_BACKEND": backend, "SER_PRECISION": precision}
        with running_service(tag, home, env=env, timeout=300, python=args.python) as url:
            name = f"ours {backend} {precision}" + (" (default)" if server == DEFAULT_SERVER else "")
            results += measure(name, f"{url}/classify", clips, args.requests, args.concurrency)
            probabilities[name] = answers(f"{url}/classify", clips)
    with alternative_server(checkpoint, tmp / kind / "baseline.log") as (url, _):
        results += measure("alternative", f"{url}/classify", clips, args.requests, args.concurrency)
        reference = answers(f"{url}/classify", clips)
    differences = {}
    for name, found in probabilities.items() if head is None else ():  # the alternative has no head
        differences[name] = np.abs(found - reference).max()
        print(
            f"{kind}: {name}: largest |probability difference| from the alternative {differences[name]:.1e}"
        )
    return results, raw, differences


def tables(by_model: dict[str, Measured], python: str) -> list[str]:
    lines = [
        f"{cpu_model()}, {os.cpu_count()} cores; our server run by {python}",
        "",
        "| model | server | concurrency | requests/s | vs alternative | p50 ms | p95 ms | p99 ms "
        "| p99 vs alternative |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model, (levels, _, _) in by_model.items():
        base = {lv.concurrency: lv for lv in levels if lv.server == "alternative"}
        for lv in levels:
            ref = base[lv.concurrency]
            lines.append(
                f"| {model} | {lv.server} | {lv.concurrency} | {lv.requests_per_s:.2f} | "
                f"{lv.requests_per_s / ref.requests_per_s:.2f}x | {lv.percentile(50):.0f} | "
                f"{lv.percentile(95):.0f} | {lv.percentile(99):.0f} | "
                f"{lv.percentile(99) / ref.percentile(99):.2f}x |"
            )
    lines += [
        "",
        "| model | server | raw PyTorch forward ms, same precision (3-s clip) | ours p50 ms, concurrency 1 "
        "| overhead |",
        "|---|---|---:|---:|---:|",
    ]
    for model, (levels, raw, _) in by_model.items():
        for ours in (lv for lv in levels if lv.server != "alternative" and lv.concurrency == 1):
            precision = ours.server.split()[2]
            forward_ms, p50 = raw[precision], ours.percentile(50)
            lines.append(
                f"| {model} | {ours.server} | {forward_ms:.0f} | {p50:.0f} | {p50 - forward_ms:+.0f} ms "
                f"({p50 / forward_ms - 1:+.0%}) |"
            )
    lines += [
        "",
        "| model | server | largest probability difference from the alternative |",
        "|---|---|---:|",
    ]
    for model, (_, _, differences) in by_model.items():
        lines += [f"| {model} | {server} | {difference:.1e} |" for server, difference in differences.items()]
    return lines


def plot(by_model: dict[str, Measured], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(by_model), figsize=(5.5 * len(by_model), 4), squeeze=False)
    for ax, (model, (levels, _, _)) in zip(axes[0], by_model.items()):
        for server in dict.fromkeys(lv.server for lv in levels):
            points = [lv for lv in levels if lv.server == server]
            ax.plot(
                [p.concurrency for p in points], [p.requests_per_s for p in points], marker="o", label=server
            )
        ax.set(
            title=f"{model} model, 3-s clips",
            xlabel="concurrent requests",
            ylabel="requests / s",
            xscale="log",
        )
        ticks = [lv.concurrency for lv in levels if lv.server == "alternative"]
        ax.set_xticks(ticks, labels=[str(t) for t in ticks])
        ax.minorticks_off()
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="small,base")
    parser.add_argument("--requests", type=int, default=32, help="requests per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument(
        "--servers",
        nargs="+",
        default=SERVERS,
        choices=SERVERS,
        help="our service's SER_BACKEND:SER_PRECISION settings to measure",
    )
    parser.add_argument("--out", default=str(REPO_ROOT / "runs" / "bench"))
    parser.add_argument("--python", default=sys.executable, help="the interpreter that runs our server")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clips = make_clips(args.clips)
    retain_freed_memory()  # as the server does, so the raw forward is measured like for like
    with tempfile.TemporaryDirectory() as tmp:
        by_model = {kind: bench_model(kind, args, clips, Path(tmp)) for kind in args.models.split(",")}
    lines = tables(by_model, args.python)
    print("\n".join(lines))
    (out / "serve.md").write_text("\n".join(lines) + "\n")
    plot(by_model, out / "serve.png")
    print(f"wrote {out / 'serve.md'} and {out / 'serve.png'}")


if __name__ == "__main__":
    main()
