"""Benchmark training: samples per second and validation UAR of three trainers, in one run, on one corpus.

1. ours: `pipeline.train.train(cfg)`, the Accelerate loop over the prepared (decoded once) audio.
2. ours, Trainer: `train.trainer=hf`, the same model, data, optimizer and loss through `transformers.Trainer`.
3. example: the recipe of transformers' examples/pytorch/audio-classification/run_audio_classification.py
   with its README flags: a `datasets` `Audio(sampling_rate=16000)` column, decoded and resampled on the
   fly (torchcodec + FFmpeg) in every epoch by `set_transform`, random crop and the feature extractor per
   batch, `Trainer` padding random batches (`DataCollatorWithPadding`), evaluating and saving every epoch
   and loading the best checkpoint at the end, then `trainer.evaluate()`.
Also `ours-grouped` / `ours-random`: our loop with `train.group_by_length` true / false; by default the
one that differs from the configuration runs too, which separates the padding lever.

All see the same split (train and validation of fold 0 of our prepared data), the same model (the small
wav2vec2 of `Config()`, seeded alike), the same feature extractor and OUR hyperparameters: epochs, batch
size (training and evaluation), learning rate, weight decay, warm-up ratio, linear schedule, max grad
norm, seed, dataloader workers, crop length (`data.max_train_seconds`) and a trainable feature encoder.
The example's own defaults (frozen feature encoder, 20 s crops, learning rate 3e-5, ...) are replaced so
that only the pipeline differs; it picks its best checkpoint by UAR instead of accuracy, and keeps the
Trainer's optimizer (fused AdamW; ours: AdamW) and its metric code is replaced by scikit-learn's.

Wall time is the whole call, model building to final evaluation, as a user waits for it; "training only"
is wall time less the time spent evaluating (`predict_loader` in ours, `Trainer.evaluate` otherwise);
CPU time (all threads of the process) is the measure least disturbed by other load on the machine.
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
import contextlib
import functools
import math
import os
import tempfile
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from random import randint

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# OpenMP threads that spin while waiting turn a busy machine's hiccups into 10x slower steps; passive
# waiting keeps timings stable under other load. The same for every trainer; set it to ACTIVE to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import datasets  # noqa: E402
import matplotlib.pyplot  # noqa: E402, F401  (one-time imports are paid before any timing)
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from bench_prepare import make_corpus  # noqa: E402
from sklearn.metrics import accuracy_score, recall_score  # noqa: E402

import pipeline.train  # noqa: E402
from pipeline.config import Config, load_config  # noqa: E402
from pipeline.features import PrepareConfig, load_prepared, prepare  # noqa: E402
from pipeline.model import build_feature_extractor, build_model  # noqa: E402

EXAMPLE = "example: run_audio_classification.py recipe"
EVALUATION = [(pipeline.train, "predict_loader"), (transformers.Trainer, "evaluate")]


@dataclass
class Run:
    name: str
    wall_s: float
    cpu_s: float  # CPU time of this process (all threads); robust to other load on the machine
    eval_s: float  # wall time spent evaluating
    eval_cpu_s: float
    val_uar: float
    padding: float | None = None  # share of padded samples in training batches, where known


class Stopwatch:
    """Wall and CPU seconds spent in the outermost calls of the functions `timing` wraps."""

    def __init__(self):
        self.seconds, self.cpu_seconds, self.depth = 0.0, 0.0, 0


@contextlib.contextmanager
def timing(targets: list[tuple[object, str]]):
    """Wraps each `owner.name` (module function or class method) to add its duration to one Stopwatch."""
    watch, originals = Stopwatch(), [(owner, name, getattr(owner, name)) for owner, name in targets]

    def wrap(original):
        @functools.wraps(original)
        def timed(*args, **kwargs):
            watch.depth += 1
            start, cpu = time.perf_counter(), time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                watch.depth -= 1
                if not watch.depth:
                    watch.seconds += time.perf_counter() - start
                    watch.cpu_seconds += time.process_time() - cpu

        return timed

    for owner, name, original in originals:
        setattr(owner, name, wrap(original))
    try:
        yield watch
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


def measure(name: str, trainer, cfg: Config) -> Run:
    """Runs `trainer(cfg)` -> (val UAR, padding share or None), timing it and its evaluations."""
    with timing(EVALUATION) as evals:
        wall, cpu = time.perf_counter(), time.process_time()
        uar, padding = trainer(cfg)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return Run(name, wall, cpu, evals.seconds, evals.cpu_seconds, uar, padding)


def with_output(cfg: Config, out: Path) -> Config:
    return replace(cfg, train=replace(cfg.train, output_dir=str(out)))


def warm_up(cfg: Config) -> None:
    """One training step of the model, so that no trainer pays torch's one-time start-up."""
    model = build_model(cfg.model, ["a", "b"])
    wave = torch.randn(2, 16_000)
    model(
        input_values=wave,
        attention_mask=torch.ones_like(wave, dtype=torch.long),
        labels=torch.zeros(2).long(),
    )["loss"].backward()


# --- 1. ours: the Accelerate loop -------------------------------------------------------------------


def ours(cfg: Config) -> tuple[float, float | None]:
    results = pipeline.train.train(cfg)
    return results["validation"]["uar"], results.get("padding_fraction")


def ours_grouped(cfg: Config) -> tuple[float, float | None]:
    """Ours with length-grouped batches (`train.group_by_length=true`): little padding."""
    return ours(replace(cfg, train=replace(cfg.train, group_by_length=True)))


def ours_random(cfg: Config) -> tuple[float, float | None]:
    """Ours with random batches (`train.group_by_length=false`), as the example batches."""
    return ours(replace(cfg, train=replace(cfg.train, group_by_length=False)))


# --- 2. ours: transformers.Trainer ------------------------------------------------------------------


def ours_trainer(cfg: Config) -> tuple[float, float | None]:
    """Our Trainer path (`train.trainer=hf`)."""
    results = pipeline.train.train(replace(cfg, train=replace(cfg.train, trainer="hf")))
    return results["validation"]["uar"], results.get("padding_fraction")


# --- 3. the example's recipe ------------------------------------------------------------------------


def example_datasets(cfg: Config) -> tuple[datasets.DatasetDict, list[str]]:
    """Our train/validation split as the example loads a corpus: audio paths (an `Audio` column) + labels."""
    splits, labels, _ = load_prepared(cfg.data.path, cfg.data.fold or 0)
    features = datasets.Features({"audio": datasets.Audio(), "label": datasets.ClassLabel(names=labels)})
    raw = datasets.DatasetDict(
        {
            name: datasets.Dataset.from_dict(
                {"audio": splits[split]["path"], "label": splits[split]["label"]}, features=features
            )
            for name, split in (("train", "train"), ("eval", "validation"))
        }
    )
    return raw, labels


def random_subsample(wav: np.ndarray, max_length: float, sample_rate: int = 16000) -> np.ndarray:
    """The example's random crop (its off-by-one included)."""
    sample_length = int(round(sample_rate * max_length))
    if len(wav) <= sample_length:
        return wav
    random_offset = randint(0, len(wav) - sample_length - 1)
    return wav[random_offset : random_offset + sample_length]


def compute_metrics(eval_pred) -> dict[str, float]:
    predictions = np.argmax(eval_pred.predictions, axis=1)
    return {
        "accuracy": accuracy_score(eval_pred.label_ids, predictions),
        "uar": recall_score(eval_pred.label_ids, predictions, average="macro", zero_division=0),
    }


def example_arguments(cfg: Config, train_clips: int) -> transformers.TrainingArguments:
    """The README's flags, with our hyperparameters in place of the example's."""
    t = cfg.train
    steps = t.epochs * math.ceil(math.ceil(train_clips / t.batch_size) / t.gradient_accumulation_steps)
    return transformers.TrainingArguments(
        output_dir=t.output_dir,
        remove_unused_columns=False,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        lr_scheduler_type="linear",
        warmup_steps=int(t.warmup_ratio * steps),  # as ours rounds it
        max_grad_norm=t.max_grad_norm,
        num_train_epochs=t.epochs,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        dataloader_num_workers=t.num_workers,
        bf16=t.mixed_precision == "bf16",
        fp16=t.mixed_precision == "fp16",
        logging_strategy="steps",
        logging_steps=10,
        eval_strategy="epoch",
        save_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model="uar",
        save_total_limit=3,
        seed=t.seed,
        report_to="none",
        disable_tqdm=True,
    )


def example(cfg: Config) -> tuple[float, float | None]:
    """run_audio_classification.py's main(), from loading the corpus to the final evaluation."""
    transformers.set_seed(cfg.train.seed)
    raw, labels = example_datasets(cfg)
    feature_extractor = build_feature_extractor(cfg.model)
    raw = raw.cast_column("audio", datasets.Audio(sampling_rate=feature_extractor.sampling_rate))
    model_input_name = feature_extractor.model_input_names[0]

    def train_transforms(batch):
        wavs = [
            random_subsample(a["array"], cfg.data.max_train_seconds, feature_extractor.sampling_rate)
            for a in batch["audio"]
        ]
        inputs = feature_extractor(wavs, sampling_rate=feature_extractor.sampling_rate)
        return {model_input_name: inputs.get(model_input_name), "labels": list(batch["label"])}

    def val_transforms(batch):
        wavs = [a["array"] for a in batch["audio"]]
        inputs = feature_extractor(wavs, sampling_rate=feature_extractor.sampling_rate)
        return {model_input_name: inputs.get(model_input_name), "labels": list(batch["label"])}

    model = build_model(cfg.model, labels)
    raw["train"].set_transform(train_transforms, output_all_columns=False)
    raw["eval"].set_transform(val_transforms, output_all_columns=False)
    trainer = transformers.Trainer(
        model=model,
        args=example_arguments(cfg, len(raw["train"])),
        train_dataset=raw["train"],
        eval_dataset=raw["eval"],
        compute_metrics=compute_metrics,
        processing_class=feature_extractor,
    )
    trainer.train()
    trainer.save_model()
    return trainer.evaluate()["eval_uar"], None


TRAINERS = {
    "example": (EXAMPLE, example),
    "ours": ("ours: Accelerate loop", ours),
    "ours-trainer": ("ours: transformers.Trainer", ours_trainer),
    "ours-grouped": ("ours: Accelerate loop, length-grouped batches", ours_grouped),
    "ours-random": ("ours: Accelerate loop, random batches", ours_random),
}


def default_trainers(cfg: Config) -> str:
    """The three trainers, then ours with the batching its configuration does not use (the padding lever)."""
    other = "ours-random" if getattr(cfg.train, "group_by_length", False) else "ours-grouped"
    return f"example,ours,ours-trainer,{other}"


# --- where the example's time goes ------------------------------------------------------------------


def padding_share(lengths: list[int], batch_size: int, epochs: int = 20) -> float:
    """Share of padded samples in random batches (the example's RandomSampler), over a few epochs."""
    lengths, padded, generator = np.asarray(lengths), 0, torch.Generator().manual_seed(0)
    for _ in range(epochs):
        order = torch.randperm(len(lengths), generator=generator).numpy()
        padded += sum(
            b.max() * b.size
            for b in np.array_split(lengths[order], range(batch_size, len(order), batch_size))
        )
    return float(1 - epochs * lengths.sum() / padded)


def profile_example(cfg: Config) -> dict[str, float]:
    """CPU seconds per epoch of the example's data work on the train split, in its batches: decoding with
    resampling and downmix (`audio["array"]`), then the feature extractor; and its padding share."""
    raw, _ = example_datasets(cfg)
    extractor = build_feature_extractor(cfg.model)
    sr, bs = extractor.sampling_rate, cfg.train.batch_size
    ds = raw["train"].cast_column("audio", datasets.Audio(sampling_rate=sr))
    ds[0]["audio"]["array"]  # torchcodec's first call

    def decode() -> tuple[float, list[np.ndarray]]:
        start = time.process_time()
        waves = [a["array"] for i in range(0, len(ds), bs) for a in ds[i : i + bs]["audio"]]
        return time.process_time() - start, waves

    decode_s, waves = min((decode() for _ in range(3)), key=lambda timed: timed[0])  # least disturbed
    start = time.process_time()
    for i in range(0, len(waves), bs):
        extractor(waves[i : i + bs], sampling_rate=sr)
    extract_s = time.process_time() - start
    lengths = [min(w.size, int(round(cfg.data.max_train_seconds * sr))) for w in waves]
    return {
        "decode_s": decode_s,
        "extract_s": extract_s,
        "mean_clip_s": float(np.mean(lengths)) / sr,
        "padding": padding_share(lengths, bs),
    }


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
