"""`ser train`: one fold, or every fold of the prepared data (cross-validation), with our Accelerate
loop or `transformers.Trainer`."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from accelerate import PartialState
from accelerate.tracking import LOGGER_TYPE_TO_CLASS

from ..config import TRAINERS, Config
from ..data.prepared import fold_count
from ..errors import ConfigError
from ..files import write_file_atomic
from .loop import OnEvaluate, train_fold


def train(cfg: Config, resume: bool = False, on_evaluate: OnEvaluate | None = None) -> dict:
    """Train the fold `data.fold`, or every fold of the prepared data (`run/fold<i>/`) and report the
    mean and spread of their test metrics in `run/cv_metrics.json`."""
    if cfg.train.trainer not in TRAINERS:
        raise ConfigError(f"train.trainer must be one of {', '.join(TRAINERS)}, got {cfg.train.trainer!r}")
    unknown = sorted(set(cfg.train.report_to) - {"all", *LOGGER_TYPE_TO_CLASS})
    if unknown:
        known = ", ".join(["all", *LOGGER_TYPE_TO_CLASS])
        raise ConfigError(f"train.report_to: unknown tracker {unknown[0]!r}; choose from {known}")
    if cfg.train.trainer == "hf":
        from .hf_trainer import train_fold_with_trainer as fit  # imports Trainer (slow): only when used
    else:
        fit = train_fold
    folds = [cfg.data.fold] if cfg.data.fold is not None else list(range(fold_count(cfg.data.path)))
    if len(folds) == 1:
        return fit(cfg, folds[0], resume=resume, on_evaluate=on_evaluate)
    out = Path(cfg.train.output_dir)
    runs = [
        fit(replace(cfg, train=replace(cfg.train, output_dir=str(out / f"fold{f}"))), f, resume=resume)
        for f in folds
    ]
    summary = {
        key: {"mean": float(np.mean(values)), "std": float(np.std(values)), "folds": values}
        for key in ("accuracy", "uar", "macro_f1")
        for values in [[run["test"][key] for run in runs]]
    }
    if PartialState().is_main_process:
        write_file_atomic(out / "cv_metrics.json", json.dumps(summary, indent=2))
    return {"folds": runs, "cross_validation": summary}
