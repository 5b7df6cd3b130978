"""`ser train`: one fold, or every fold of the prepared data (cross-validation), once or once per
seed, with our Accelerate loop or `transformers.Trainer`."""

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
from .jobs import Run, fitter, run_all
from .loop import OnEvaluate
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


def _check(cfg: Config) -> None:
    if cfg.train.trainer not in TRAINERS:
        raise ConfigError(f"train.trainer must be one of {', '.join(TRAINERS)}, got {cfg.train.trainer!r}")
    unknown = sorted(set(cfg.train.report_to) - {"all", *LOGGER_TYPE_TO_CLASS})
    if unknown:
        known = ", ".join(["all", *LOGGER_TYPE_TO_CLASS])
        raise ConfigError(f"train.report_to: unknown tracker {unknown[0]!r}; choose from {known}")
    if cfg.train.early_stopping_patience and cfg.train.keep != "best":
        raise ConfigError("train.early_stopping_patience keeps the best weights: add --keep best")


def _runs(cfg: Config) -> list[Run]:
    """The fold `data.fold` in `train.output_dir`, or every fold in `train.output_dir/fold<i>/`."""
    if cfg.data.fold is not None or fold_count(cfg.data.path) == 1:
        return [Run(cfg, cfg.data.fold or 0)]
    out = Path(cfg.train.output_dir)
    return [
        Run(replace(cfg, train=replace(cfg.train, output_dir=str(out / f"fold{f}"))), f)
        for f in range(fold_count(cfg.data.path))
    ]


def _cross_validation(cfg: Config, runs: list[dict]) -> dict:
    """The mean and spread of the folds' test metrics, written to `train.output_dir/cv_metrics.json`."""
    summary = fold_summary([run["test"] for run in runs])
    summary["baselines_uar"] = baselines_summary(runs)
    if "calibration" in runs[0]:
        summary["calibration"] = {
            key: spread([run["calibration"]["test"][key] for run in runs])
            for key in ("ece_before", "ece_after")
        }
    summary["protocol"] = protocol(cfg.data.path, [run["fold"] for run in runs])
    if PartialState().is_main_process:
        write_file_atomic(Path(cfg.train.output_dir) / "cv_metrics.json", json.dumps(summary, indent=2))
    return summary


def train(
    cfg: Config, resume: bool = False, on_evaluate: OnEvaluate | None = None, jobs: int | None = None
) -> dict:
    """Train the fold `data.fold`, or every fold of the prepared data (`run/fold<i>/`, `jobs` at once
    on a CPU: `pipeline.training.jobs`) and report the mean and spread of their test metrics in
    `run/cv_metrics.json`."""
    _check(cfg)
    _say_what_to_expect(cfg)
    runs = _runs(cfg)
    if len(runs) == 1:
        return fitter(cfg.train.trainer)(cfg, runs[0].fold, resume=resume, on_evaluate=on_evaluate)
    done = run_all(runs, resume, jobs)
    return {"folds": done, "cross_validation": _cross_validation(cfg, done)}


def train_seeds(cfg: Config, seeds: list[int], resume: bool = False, jobs: int | None = None) -> dict:
    """`train` once per seed (`run/seed<s>/`; every seed's folds `jobs` at once on a CPU), then the
    mean over seeds and the spread between seeds, overall and fold by fold, in
    `run/seeds_metrics.json`."""
    _check(cfg)
    _say_what_to_expect(cfg)
    out = Path(cfg.train.output_dir)
    seeded = [replace(cfg, train=replace(cfg.train, seed=s, output_dir=str(out / f"seed{s}"))) for s in seeds]
    planned = [_runs(one) for one in seeded]
    done = iter(run_all([run for runs in planned for run in runs], resume, jobs))
    per_seed = [[next(done) for _ in runs] for runs in planned]
    for one, runs in zip(seeded, per_seed):
        if len(runs) > 1:
            _cross_validation(one, runs)
    summary = {"seeds": list(seeds), **seed_summary([[run["test"] for run in runs] for runs in per_seed])}
    summary["baselines_uar"] = baselines_summary(per_seed[0])  # the same for every seed: no randomness
    summary["protocol"] = protocol(cfg.data.path, [run["fold"] for run in per_seed[0]])
    if PartialState().is_main_process:
        write_file_atomic(out / "seeds_metrics.json", json.dumps(summary, indent=2))
    return summary
