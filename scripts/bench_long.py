"""Benchmark `ser predict --segments vad` on long recordings: real-time factor, peak memory, and
whether the segments and their emotions are the ones in the recording.

The recording: synthetic utterances of the demo corpus's speakers (four emotions) with 0.6-2 s of
quiet background between them, one cycle of about 2 minutes repeated to the length asked, written
as 16-bit WAV at 16 kHz; every utterance's span and emotion is known. Each run is a fresh
`ser predict --segments vad --output timeline.jsonl` process, its resident memory sampled every
20 ms. Baselines in the same run: the same command on a 3-s clip (what the process needs whatever
the length) and, in the full install, a bare `import torch`. `--python` measures another install's
interpreter (the serving install: no torch, the ONNX models of `ser export`). Writes
runs/bench/long.md and long.png (memory over time).

    .venv/bin/python scripts/bench_long.py     # after `make run` (the demo model); about 2 minutes
    .venv/bin/python scripts/bench_long.py --python /srv/venv/bin/python   # a serving-only venv
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import soundfile as sf
from archives import SR, write_recording
from servers import cpu_model

from pipeline.inference.serve import REPO_ROOT

MODEL = REPO_ROOT / "runs" / "demo" / "model"
OUT = REPO_ROOT / "runs" / "bench"


def peak_run(command: list[str]) -> tuple[float, float, list[tuple[float, float]]]:
    """(wall seconds, peak resident MiB, [(seconds, MiB)]) of `command`, sampled every 20 ms."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watched, samples = psutil.Process(proc.pid), [(0.0, 0.0)]
    while proc.poll() is None:
        try:
            samples.append((time.perf_counter() - start, watched.memory_info().rss / 2**20))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    if proc.returncode:
        sys.exit(f"{' '.join(command)} failed: {proc.stderr.read().decode()[-500:]}")
    return time.perf_counter() - start, max(m for _, m in samples), samples


def overlap(a: tuple, b: tuple) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


def score(timeline: Path, truth: list[tuple]) -> tuple[float, float]:
    """(share of utterances found as one segment (overlap > 0.5), share of those labelled right)."""
    segments = [json.loads(line) for line in timeline.read_text().splitlines()]
    found = right = 0
    j = 0
    for start, end, emotion in truth:
        while j < len(segments) and segments[j]["end"] < start:
            j += 1
        if j < len(segments) and overlap((segments[j]["start"], segments[j]["end"]), (start, end)) > 0.5:
            found += 1
            right += segments[j]["label"] == emotion
    return found / len(truth), right / max(found, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(MODEL / "best"))
    parser.add_argument("--minutes", type=float, nargs="+", default=[2.0, 60.0])
    parser.add_argument("--out", type=Path, default=OUT, help="where long.md and long.png go")
    parser.add_argument("--python", default=sys.executable, help="the interpreter of the install to measure")
    args = parser.parse_args()
    ser = [args.python, "-m", "pipeline.cli", "predict", "--checkpoint", args.checkpoint]
    has_torch = subprocess.run([args.python, "-c", "import torch"], capture_output=True).returncode == 0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.wav"
        write_recording(clip, 0)  # one cycle; cut to 3 s below
        sf.write(clip, sf.read(clip, dtype="float32")[0][: 3 * SR], SR, subtype="PCM_16")
        torch_mib = peak_run([args.python, "-c", "import torch"])[1] if has_torch else None
        _, clip_mib, _ = peak_run([*ser, str(clip)])
        for minutes in args.minutes:
            path, timeline = Path(tmp) / f"{minutes:g}min.wav", Path(tmp) / "timeline.jsonl"
            truth = write_recording(path, minutes)
            seconds = sf.info(path).duration
            wall, mib, samples = peak_run([*ser, "--segments", "vad", "--output", str(timeline), str(path)])
            found, right = score(timeline, truth)
            rows.append((seconds, wall, mib, found, right, len(truth), samples))
            path.unlink()
    install = "full install" if has_torch else "serving install (no torch)"
    torch_line = f"`import torch` peaks at {torch_mib:.0f} MiB; " if has_torch else ""
    lines = [
        f"`ser predict --segments vad --output timeline.jsonl`, {install}, {cpu_model()}, "
        f"{psutil.cpu_count()} cores",
        f"baselines: {torch_line}a 3-s clip (whole) at {clip_mib:.0f} MiB",
        "",
        "| recording | wall s | real time / wall | peak MiB | vs 3-s clip | utterances found | right label |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for seconds, wall, mib, found, right, n, _ in rows:
        lines.append(
            f"| {seconds / 60:.1f} min ({n} utterances) | {wall:.1f} | {seconds / wall:.0f}x | {mib:.0f} "
            f"| {mib / clip_mib:.2f}x | {found:.1%} | {right:.1%} |"
        )
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "long.md").write_text("\n".join(lines) + "\n")
    plot(rows, torch_mib, clip_mib, args.out / "long.png")


def plot(rows: list[tuple], torch_mib: float | None, clip_mib: float, path: Path) -> None:
    """Resident memory over each run's wall time, against the two baselines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for seconds, *_, samples in rows:
        ax.plot(*zip(*samples), label=f"{seconds / 60:.0f}-min recording")
    ax.axhline(clip_mib, color="grey", linestyle="--", label="a 3-s clip, peak")
    if torch_mib is not None:
        ax.axhline(torch_mib, color="grey", linestyle=":", label="`import torch`, peak")
    ax.set(xlabel="wall time (s)", ylabel="resident memory (MiB)", ylim=(0, None))
    ax.set_title("ser predict --segments vad: memory does not grow with the recording")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
