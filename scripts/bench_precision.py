"""Benchmark inference precision and backend: PyTorch fp32 against bf16 (autocast) and int8 (dynamic
quantization), and ONNX Runtime in fp32 and int8.

- Accuracy: the trained demo checkpoint (`make run` trains it into runs/demo/model) scored by
  `ser evaluate`'s code on the demo corpus's test split with each setting; the change is in points
  of accuracy against PyTorch fp32.
- Speed: clips per second of `Predictor.probabilities`, one clip per call (as a request arrives),
  for the demo checkpoint over its test clips and for a wav2vec2-base sized model (95 M parameters,
  random weights: speed does not depend on them) over 3-s clips. Ratios are against PyTorch fp32,
  measured in the same run, in this process, with the libraries' default threads.

Writes runs/bench/precision.md and precision.png.

    .venv/bin/python scripts/bench_precision.py        # about 2 minutes on 2 cores after `make run`
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.data.prepared import load_prepared
from pipeline.inference.evaluate import evaluate_checkpoint
from pipeline.inference.memory import retain_freed_memory
from pipeline.inference.predictor import Predictor
from pipeline.inference.serve import REPO_ROOT

DEMO = REPO_ROOT / "runs" / "demo"
SETTINGS = ["torch:fp32", "torch:bf16", "torch:int8", "onnx:fp32", "onnx:int8"]
REFERENCE = "torch fp32"
COLOURS = ["#888888", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]


def clips_per_second(predictor: Predictor, waves: list[np.ndarray], rounds: int) -> float:
    """Best of `rounds` passes over `waves`, one clip per call, after one warm-up call."""
    predictor.probabilities(waves[:1])
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for wave in waves:
            predictor.probabilities([wave])
        best = min(best, time.perf_counter() - start)
    return len(waves) / best


def base_sized_checkpoint(directory: Path) -> Path:
    from bench_serve import make_checkpoint

    return make_checkpoint("base", directory)


def measure(args) -> list[dict]:
    rows = []
    dataset, _, _ = load_prepared(args.data)
    test_waves = [np.asarray(w, dtype=np.float32) for w in dataset["test"]["input_values"]]
    rng = np.random.default_rng(0)
    three_seconds = [0.1 * rng.standard_normal(48_000).astype(np.float32) for _ in range(args.base_clips)]
    with tempfile.TemporaryDirectory() as tmp:
        base = base_sized_checkpoint(Path(tmp) / "base")
        for setting in args.settings:
            backend, precision = setting.split(":")
            metrics = evaluate_checkpoint(args.checkpoint, args.data, precision=precision, backend=backend)
            small = Predictor.from_pretrained(args.checkpoint, precision=precision, backend=backend)
            large = Predictor.from_pretrained(base, precision=precision, backend=backend)
            row = {
                "setting": f"{backend} {precision}",
                "accuracy": metrics["accuracy"],
                "uar": metrics["uar"],
                "samples": metrics["samples"],
                "demo_clips_per_s": clips_per_second(small, test_waves, args.rounds),
                "base_clips_per_s": clips_per_second(large, three_seconds, args.rounds),
            }
            print(
                f"{row['setting']:>10}: accuracy {row['accuracy']:.3f}, UAR {row['uar']:.3f}, "
                f"demo model {row['demo_clips_per_s']:.1f} clips/s, "
                f"base-sized {row['base_clips_per_s']:.2f} clips/s",
                flush=True,
            )
            rows.append(row)
    return rows


def table(rows: list[dict]) -> list[str]:
    fp32 = next(r for r in rows if r["setting"] == REFERENCE)
    lines = [
        f"| backend, precision | test accuracy ({fp32['samples']} clips) | change (points) | UAR "
        "| demo model clips/s | vs torch fp32 | base-sized clips/s (3 s) | vs torch fp32 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        demo, base = r["demo_clips_per_s"], r["base_clips_per_s"]
        lines.append(
            f"| {r['setting']} | {r['accuracy']:.3f} | {100 * (r['accuracy'] - fp32['accuracy']):+.1f} "
            f"| {r['uar']:.3f} | {demo:.1f} | {demo / fp32['demo_clips_per_s']:.2f}x "
            f"| {base:.2f} | {base / fp32['base_clips_per_s']:.2f}x |"
        )
    return lines


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fp32 = next(r for r in rows if r["setting"] == REFERENCE)
    names = [r["setting"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, title in (
        (axes[0], "demo_clips_per_s", "demo model (test clips)"),
        (axes[1], "base_clips_per_s", "wav2vec2-base sized (3-s clips)"),
    ):
        speedups = [r[key] / fp32[key] for r in rows]
        bars = ax.bar(
            names, speedups, color=["#888888", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"][: len(rows)]
        )
        labels = [
            f"{s:.2f}x\nacc {r['accuracy']:.3f}" if key.startswith("demo") else f"{s:.2f}x"
            for s, r in zip(speedups, rows)
        ]
        ax.bar_label(bars, labels=labels)
        ax.axhline(1.5, color="black", linestyle="--", linewidth=1, label="goal 1.5x")
        ax.set(title=title, ylabel="throughput vs PyTorch fp32", ylim=(0, max(speedups) * 1.35))
        ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(DEMO / "model" / "best"))
    parser.add_argument("--data", default=str(DEMO / "data"))
    parser.add_argument(
        "--settings", nargs="+", default=SETTINGS, choices=SETTINGS, help="backend:precision pairs"
    )
    parser.add_argument("--rounds", type=int, default=3, help="passes per measurement (the best counts)")
    parser.add_argument("--base-clips", type=int, default=8)
    parser.add_argument("--out", default=str(REPO_ROOT / "runs" / "bench"))
    args = parser.parse_args()
    if "torch:fp32" not in args.settings:
        parser.error("--settings must include torch:fp32 (the reference)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    retain_freed_memory()  # as `ser predict` and the model service do
    rows = measure(args)
    lines = table(rows)
    print("\n".join(lines))
    (out / "precision.md").write_text("\n".join(lines) + "\n")
    plot(rows, out / "precision.png")
    print(f"wrote {out / 'precision.md'} and {out / 'precision.png'}")


if __name__ == "__main__":
    main()
