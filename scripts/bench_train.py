"""Benchmark training: samples per second and validation UAR of three trainers, in one run, on one corpus.

1. ours: `pipeline.training.run.train(cfg)`, the Accelerate loop over the prepared (decoded once) audio.
2. ours, Trainer: `train.trainer=hf`, the same model, data, optimizer and loss through `transformers.Trainer`.
3. example: the recipe of transformers' examples/pytorch/audio-classification/run_audio_classification.py
   with its README flags (`scripts/baseline_train.py`): audio decoded and resampled on the fly in every
   epoch, random crop and the feature extractor per batch, `Trainer` padding random batches, evaluating
   and saving every epoch and loading the best checkpoint at the end, then `trainer.evaluate()`.
Also `ours-grouped` / `ours-random`: our loop with `train.group_by_length` true / false; by default the
one that differs from the configuration runs too, which separates the padding lever.

All see the same split (train and validation of fold 0 of our prepared data), the same model (the small
model of `Config()`, seeded alike), the same feature extractor and OUR hyperparameters: epochs, batch
size (training and evaluation), learning rate, weight decay, warm-up ratio, linear schedule, max grad
norm, seed, dataloader workers, crop length (`data.max_train_seconds`) and a trainable feature encoder.
The example's own defaults (frozen feature encoder, 20 s crops, learning rate 3e-5, ...) are replaced so
that only the pipeline differs; it picks its best checkpoint by UAR instead of accuracy, and keeps the
Trainer's optimizer (fused AdamW; ours: AdamW) and its metric code is replaced by scikit-learn's.

Wall time is the whole call, model building to final evaluation, as a user waits for it; "training only"
is wall time less the time spent evaluating, as each trainer reports it: ours its results'
`evaluation_s` (validation during training, then the best checkpoint on validation and test), the
example its `trainer.evaluate` calls (timed by `baseline_train.TimedTrainer`); CPU time (all threads of
the process) is the measure least disturbed by other load on the machine.
samples/s = train clips x epochs / seconds; val UAR = macro recall of the best checkpoint on validation.
torch keeps its default thread count; OpenMP threads wait passively (see below). The corpus is the demo
corpus re-saved as 48 kHz stereo WAV (`bench_prepare.make_corpus`); ours needs `ser prepare` once (timed,
reported apart). A profile splits the example's training CPU time per epoch into decoding (with
resampling), the feature extractor and the rest (the model on its padded batches), beside each trainer's
training CPU time per epoch. Prints Markdown tables and writes them, with a bar chart, to --out.

    .venv/bin/python scripts/bench_train.py            # needs `make bench-deps` (FFmpeg, torchcodec)
    .venv/bin/python scripts/bench_train.py --epochs 3 --trainers example,ours data.max_train_seconds=1.0
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# OpenMP threads that spin while waiting turn a busy machine's hiccups into 10x slower steps; passive
# waiting keeps timings stable under other load. The same for every trainer; set it to ACTIVE to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import matplotlib.pyplot  # noqa: E402, F401  (one-time imports are paid before any timing)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from baseline_train import example, profile_example  # noqa: E402
from bench_prepare import make_corpus  # noqa: E402

from pipeline.config import Config, load_config  # noqa: E402
from pipeline.data.prepare import prepare  # noqa: E402
from pipeline.data.prepare_config import PrepareConfig  # noqa: E402
from pipeline.data.prepared import load_prepared  # noqa: E402
from pipeline.model import build_feature_extractor, build_model  # noqa: E402
from pipeline.training.run import train  # noqa: E402

EXAMPLE = "example: run_audio_classification.py recipe"


@dataclass
class Run:
    name: str
    wall_s: float
    cpu_s: float  # CPU time of this process (all threads); robust to other load on the machine
    eval_s: float  # wall time spent evaluating
    eval_cpu_s: float
    val_uar: float
    padding: float | None = None  # share of padded samples in training batches, where known


def measure(name: str, trainer: Callable[[Config], dict], cfg: Config) -> Run:
    """Runs `trainer(cfg)`, timing the whole call; its results give the UAR and the time it evaluated."""
    wall, cpu = time.perf_counter(), time.process_time()
    results = trainer(cfg)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return Run(
        name,
        wall,
        cpu,
        results["evaluation_s"],
        results["evaluation_cpu_s"],
        results["validation"]["uar"],
        results.get("padding_fraction"),
    )


def with_output(cfg: Config, out: Path) -> Config:
    return replace(cfg, train=replace(cfg.train, output_dir=str(out)))


def warm_up(cfg: Config) -> None:
    """One training step of the model, so that no trainer pays torch's one-time start-up."""
    model = build_model(cfg.model, ["a", "b"])
    waves = list(np.random.default_rng(0).standard_normal((2, 16_000)).astype(np.float32))
    inputs = build_feature_extractor(cfg.model)(
        waves, sampling_rate=16_000, return_attention_mask=True, return_tensors="pt"
    )
    model(**inputs, labels=torch.zeros(2).long())["loss"].backward()


def ours(cfg: Config, **overrides) -> dict:
    """`pipeline.training.run.train` of one fold, with `train.*` overrides: its results."""
    return train(replace(cfg, train=replace(cfg.train, **overrides)))


TRAINERS = {
    "example": (EXAMPLE, example),
    "ours": ("ours: Accelerate loop", ours),
    "ours-trainer": ("ours: transformers.Trainer", partial(ours, trainer="hf")),
    "ours-grouped": ("ours: Accelerate loop, length-grouped batches", partial(ours, group_by_length=True)),
    "ours-random": ("ours: Accelerate loop, random batches", partial(ours, group_by_length=False)),
}


def default_trainers(cfg: Config) -> str:
    """The three trainers, then ours with the batching its configuration does not use (the padding lever)."""
    other = "ours-random" if getattr(cfg.train, "group_by_length", False) else "ours-grouped"
    return f"example,ours,ours-trainer,{other}"


# --- report -----------------------------------------------------------------------------------------


def results_table(runs: list[Run], samples: int) -> list[str]:
    base = next((r for r in runs if r.name == EXAMPLE), runs[0])
    ref = "example" if base.name == EXAMPLE else "first"

    def cells(run: Run) -> tuple[float, float, float]:  # samples per wall s, per training s, per CPU s
        return samples / run.wall_s, samples / (run.wall_s - run.eval_s), samples / run.cpu_s

    rows = []
    for run in runs:
        speeds = cells(run)
        ratios = [s / b for s, b in zip(speeds, cells(base))]
        padding = "" if run.padding is None else f"{run.padding:.0%}"
        rows.append(
            f"| {run.name} | {speeds[0]:.1f} | {ratios[0]:.2f}x | {speeds[1]:.1f} | {ratios[1]:.2f}x "
            f"| {speeds[2]:.1f} | {ratios[2]:.2f}x | {run.val_uar:.3f} | {run.wall_s:.0f} | {run.eval_s:.0f} "
            f"| {run.cpu_s:.0f} | {padding} |"
        )
    return [
        f"| trainer | samples/s | x vs {ref} | training only | x | per CPU s | x | val UAR "
        "| wall s | eval s | CPU s | padding |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "samples/s: train clips x epochs over the wall time of the whole run (training, evaluation every "
        "epoch, checkpoints, final evaluation); training only: over wall time less evaluation; per CPU s: "
        "over the CPU time of all threads (least affected by other load on the machine).",
    ]


def profile_table(runs: list[Run], profile: dict[str, float], epochs: int) -> list[str]:
    """The example's training CPU time per epoch, split; and the training CPU time per epoch of each run."""
    per_epoch = {r.name: (r.cpu_s - r.eval_cpu_s) / epochs for r in runs}
    base = per_epoch[EXAMPLE]
    parts = {
        "decode + resample to 16 kHz + downmix (torchcodec + FFmpeg)": profile["decode_s"],
        "feature extractor (normalise)": profile["extract_s"],
    }
    parts["the rest: the model on its random batches, Trainer"] = base - sum(parts.values())
    return [
        f"Where the example's training CPU time goes, per epoch ({profile['padding']:.0%} of the samples in "
        f"its random batches are padding; clips average {profile['mean_clip_s']:.2f} s):",
        "",
        "| part | CPU s per epoch | share |",
        "|---|---:|---:|",
        *(f"| {name} | {s:.1f} | {s / base:.0%} |" for name, s in parts.items()),
        "",
        "Training CPU s per epoch (CPU time less evaluation), by trainer:",
        "",
        "| trainer | CPU s per epoch | x vs example |",
        "|---|---:|---:|",
        *(f"| {name} | {s:.1f} | {base / s:.2f}x |" for name, s in per_epoch.items()),
    ]


def plot(runs: list[Run], samples: int, path: Path) -> None:
    """Samples per wall second and per CPU second, side by side, with each run's UAR."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, sharey=True, figsize=(11, 0.5 * len(runs) + 1.4))
    colors = ["grey" if r.name == EXAMPLE else "tab:blue" for r in runs]
    for ax, (label, seconds) in zip(
        axes, [("samples per wall-clock second (whole run)", "wall_s"), ("samples per CPU second", "cpu_s")]
    ):
        speeds = [samples / getattr(r, seconds) for r in runs]
        ax.barh([r.name for r in runs], speeds, color=colors)
        for i, (r, speed) in enumerate(zip(runs, speeds)):
            ax.annotate(f" UAR {r.val_uar:.3f}", (speed, i), va="center", fontsize=8)
        ax.set_xlabel(label)
        ax.margins(x=0.2)
    axes[0].invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_all(keys: list[str], cfg: Config, tmp: Path) -> tuple[list[Run], list[str]]:
    """Each trainer in turn, in its own output directory: the runs, and the names of those that failed."""
    runs, failed = [], []
    for key in keys:
        name, trainer = TRAINERS[key]
        try:
            runs.append(measure(name, trainer, with_output(cfg, tmp / key)))
            print(runs[-1])
        except Exception:  # one broken trainer does not cost the others' numbers
            traceback.print_exc()
            failed.append(name)
    return runs, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speakers", type=int, default=40)
    parser.add_argument("--utterances", type=int, default=6)
    parser.add_argument("--rate", type=int, default=48_000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument(
        "--trainers",
        help=f"run in this order, of: {', '.join(TRAINERS)} (default: {default_trainers(Config())})",
    )
    parser.add_argument("--out", default="runs/bench")
    parser.add_argument(
        "overrides",
        nargs="*",
        help="section.key=value config overrides for every trainer (e.g. model.freeze_feature_encoder=true); "
        "the example follows data.max_train_seconds, model.* and the optimisation keys it has",
    )
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files, audio_s = make_corpus(tmp / "corpus", args.speakers, args.utterances, args.rate)
        start = time.perf_counter()
        prepare([tmp / "corpus"], tmp / "data", PrepareConfig(num_proc=os.cpu_count() or 1))
        prepare_s = time.perf_counter() - start
        cfg = load_config(None, args.overrides)
        cfg.data.path, cfg.data.fold, cfg.train.epochs = str(tmp / "data"), 0, args.epochs
        train_clips = len(load_prepared(cfg.data.path, 0)[0]["train"])
        warm_up(cfg)
        load = os.getloadavg()[0]
        runs, failed = run_all((args.trainers or default_trainers(cfg)).split(","), cfg, tmp)
        example_run = next((r for r in runs if r.name == EXAMPLE), None)
        profile = profile_example(cfg) if example_run else None
    if not runs:
        raise SystemExit("no trainer finished")
    samples = train_clips * args.epochs
    lines = [
        f"{len(files)} clips ({audio_s:.0f} s of {args.rate} Hz stereo WAV), {train_clips} for training, "
        f"{args.epochs} epochs of batch {cfg.train.batch_size}; {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; "
        f"load average {load:.1f} before, {os.getloadavg()[0]:.1f} after. "
        f"Ours needs `ser prepare` once: {prepare_s:.1f} s (not in the table). "
        f"Overrides: {' '.join(args.overrides) or 'none'}.",
    ]
    if example_run:
        example_run.padding = profile["padding"]
    lines += ["", *results_table(runs, samples), *(f"\nFailed (see the log): {name}." for name in failed)]
    if example_run:
        lines += ["", *profile_table(runs, profile, args.epochs)]
    table = "\n".join(lines)
    print(table)
    (out / "train.md").write_text(table + "\n")
    plot(runs, samples, out / "train.png")


if __name__ == "__main__":
    main()
