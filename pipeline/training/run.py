"""`ser train`: one fold, or every fold of the prepared data (cross-validation), with our Accelerate
loop or `transformers.Trainer`."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from accelerate import PartialState
from accelerate.tracking import LOGGER_TYPE_TO_CLASS

from ..config import TRAINERS, Config
from ..data.prepared import fold_count
from ..errors import ConfigError
from ..files import write_file_atomic
from ..metrics import fold_summary, seed_summary, spread
from .loop import OnEvaluate, train_fold
from .protocol import protocol


def _say_what_to_expect(cfg: Config) -> None:
    """One line when a randomly initialised model is to learn real (not synthetic) speech."""
    summary = Path(cfg.data.path) / "summary.json"
    if cfg.model.backbone or not summary.is_file() or json.loads(summary.read_text()).get("synthetic", True):
        return
    if PartialState().is_main_process:
        print(
            "note: this trains a randomly initialised model on real speech; a pretrained backbone usually "
            "does much better: `ser prepare --backbone facebook/wav2vec2-base ...`, then "
            "`ser train --backbone facebook/wav2vec2-base ...`",
            flush=True,
        )


def baselines_summary(runs: list[dict]) -> dict:
    """{baseline: mean and spread over the runs' folds of its test UAR}."""
    return {
        name: spread([run["baselines"][name]["test"]["uar"] for run in runs]) for name in runs[0]["baselines"]
    }


def train(cfg: Config, resume: bool = False, on_evaluate: OnEvaluate | None = None) -> dict:
    """Train the fold `data.fold`, or every fold of the prepared data (`run/fold<i>/`) and report the
    mean and spread of their test metrics in `run/cv_metrics.json`."""
    if cfg.train.trainer not in TRAINERS:
        raise ConfigError(f"train.trainer must be one of {', '.join(TRAINERS)}, got {cfg.train.trainer!r}")
    unknown = sorted(set(cfg.train.report_to) - {"all", *LOGGER_TYPE_TO_CLASS})
    if unknown:
        known = ", ".join(["all", *LOGGER_TYPE_TO_CLASS])
        raise ConfigError(f"train.report_to: unknown tracker {unknown[0]!r}; choose from {known}")
    if cfg.train.early_stopping_patience and cfg.train.keep != "best":
        raise ConfigError("train.early_stopping_patience keeps the best weights: add --keep best")
    if cfg.train.trainer == "hf":
        from .hf_trainer import train_fold_with_trainer as fit  # imports Trainer (slow): only when used
    else:
        fit = train_fold
    _say_what_to_expect(cfg)
    folds = [cfg.data.fold] if cfg.data.fold is not None else list(range(fold_count(cfg.data.path)))
    if len(folds) == 1:
        return fit(cfg, folds[0], resume=resume, on_evaluate=on_evaluate)
    out = Path(cfg.train.output_dir)
    runs = [
        fit(replace(cfg, train=replace(cfg.train, output_dir=str(out / f"fold{f}"))), f, resume=resume)
        for f in folds
    ]
    summary = fold_summary([run["test"] for run in runs])
    summary["baselines_uar"] = baselines_summary(runs)
    if "calibration" in runs[0]:
        summary["calibration"] = {
            key: spread([run["calibration"]["test"][key] for run in runs])
            for key in ("ece_before", "ece_after")
        }
    summary["protocol"] = protocol(cfg.data.path, folds)
    if PartialState().is_main_process:
        write_file_atomic(out / "cv_metrics.json", json.dumps(summary, indent=2))
    return {"folds": runs, "cross_validation": summary}


def train_seeds(cfg: Config, seeds: list[int], resume: bool = False) -> dict:
    """`train` once per seed (`run/seed<s>/`), then the mean over seeds and the spread between seeds,
    overall and fold by fold, in `run/seeds_metrics.json`."""
    out = Path(cfg.train.output_dir)
    runs = []
    for seed in seeds:
        seeded = replace(cfg, train=replace(cfg.train, seed=seed, output_dir=str(out / f"seed{seed}")))
        done = train(seeded, resume)
        runs.append(done.get("folds", [done]))
    summary = {"seeds": list(seeds), **seed_summary([[run["test"] for run in folds] for folds in runs])}
    summary["baselines_uar"] = baselines_summary(runs[0])  # the same for every seed: no randomness
    summary["protocol"] = protocol(cfg.data.path, [run["fold"] for run in runs[0]])
    if PartialState().is_main_process:
        write_file_atomic(out / "seeds_metrics.json", json.dumps(summary, indent=2))
    return summary
