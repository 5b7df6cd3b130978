"""`ser tune`: an Optuna search over learning rate, batch size, dropout and the freezing schedule.

Every trial trains one fold with `train_fold`, reports validation UAR after each validation and is
pruned when it falls behind (MedianPruner). The study lives in `study.db`, so a second `ser tune` on
the same directory continues it; `best_config.yaml`, `trials.csv` and `history.png` sum it up.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch
import yaml
from optuna.trial import TrialState

from ..config import Config, differences
from ..errors import ConfigError, SerError
from ..plots import pyplot
from .loop import train_fold
from .setup import load_fold

STUDY_NAME = "ser-tune"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass
class SearchSpace:
    """What a trial may change; learning rates are searched log-uniformly around the configured ones."""

    lr_factors: tuple[float, float] = (0.1, 3.0)  # learning_rate (and head_learning_rate, when set) x
    batch_sizes: tuple[int, ...] = (8, 16, 32)  # capped at the number of training clips
    dropout: tuple[float, float] = (0.0, 0.3)
    freeze_fractions: tuple[float, ...] = (0.0, 0.05, 0.2)  # share of the steps with a frozen backbone


def _comparable(cfg: Config) -> dict:
    """The configuration a study was started with, less what trials set themselves."""
    values = copy.deepcopy(cfg.to_dict())
    for key in ("output_dir", "report_to"):
        values["train"].pop(key)
    return values


def suggest(trial: optuna.Trial, cfg: Config, space: SearchSpace, train_clips: int) -> Config:
    """A copy of `cfg` with this trial's values."""
    cfg = copy.deepcopy(cfg)
    low, high = space.lr_factors
    lr = cfg.train.learning_rate
    cfg.train.learning_rate = trial.suggest_float("learning_rate", lr * low, lr * high, log=True)
    if cfg.train.head_learning_rate:
        head = cfg.train.head_learning_rate
        cfg.train.head_learning_rate = trial.suggest_float(
            "head_learning_rate", head * low, head * high, log=True
        )
    sizes = sorted({min(size, train_clips) for size in space.batch_sizes})
    cfg.train.batch_size = trial.suggest_categorical("batch_size", sizes)
    cfg.model.dropout = trial.suggest_float("dropout", *space.dropout)
    fraction = trial.suggest_categorical("freeze_backbone_fraction", list(space.freeze_fractions))
    cfg.train.freeze_backbone_steps = freeze_steps(cfg, train_clips, fraction)
    cfg.model.freeze_feature_encoder = trial.suggest_categorical("freeze_feature_encoder", [False, True])
    return cfg


def freeze_steps(cfg: Config, train_clips: int, fraction: float) -> int:
    """`fraction` of the run's optimizer steps (as `train_fold` counts them)."""
    batches = math.ceil(train_clips / cfg.train.batch_size)
    steps = cfg.train.epochs_for(batches) * math.ceil(batches / cfg.train.gradient_accumulation_steps)
    return round(fraction * steps)


def _objective(cfg: Config, out: Path, space: SearchSpace, train_clips: int, fold: int):
    def objective(trial: optuna.Trial) -> float:
        trial_cfg = suggest(trial, cfg, space, train_clips)
        run_dir = out / f"trial-{trial.number:03d}"
        trial_cfg.train.output_dir, trial_cfg.train.report_to = str(run_dir), []
        trial.set_user_attr("freeze_backbone_steps", trial_cfg.train.freeze_backbone_steps)
        validations = []

        def report(step: int, record: dict) -> None:
            validations.append(step)  # trials compare at the same validation, whatever their batch size
            trial.report(record["val_uar"], len(validations))
            if trial.should_prune():
                raise optuna.TrialPruned(f"val UAR {record['val_uar']:.3f} at step {step}")

        try:
            results = train_fold(trial_cfg, fold, on_evaluate=report)
        finally:
            trial.set_user_attr("validation_steps", validations)
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        return results["best_val_uar"]

    return objective


def _announce(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    params = ", ".join(f"{k}={_fmt(v)}" for k, v in trial.params.items())
    if trial.state == TrialState.PRUNED:
        last = trial.intermediate_values[trial.last_step] if trial.intermediate_values else float("nan")
        outcome = f"pruned after {len(trial.intermediate_values)} validation(s), val UAR {last:.3f}"
    elif trial.state == TrialState.COMPLETE:
        outcome = f"val UAR {trial.value:.3f} (best so far {study.best_value:.3f})"
    else:
        outcome = trial.state.name.lower()
    print(f"trial {trial.number}: {outcome} · {params}", flush=True)


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def best_config(cfg: Config, trial: optuna.trial.FrozenTrial) -> Config:
    """`cfg` with the values of `trial`."""
    cfg = copy.deepcopy(cfg)
    params = trial.params
    cfg.train.learning_rate = params["learning_rate"]
    if "head_learning_rate" in params:
        cfg.train.head_learning_rate = params["head_learning_rate"]
    cfg.train.batch_size = params["batch_size"]
    cfg.train.freeze_backbone_steps = trial.user_attrs["freeze_backbone_steps"]
    cfg.model.dropout = params["dropout"]
    cfg.model.freeze_feature_encoder = params["freeze_feature_encoder"]
    return cfg


def write_trials_csv(study: optuna.Study, path: Path) -> None:
    """One row per trial: number, state, value, duration and every parameter."""
    names = sorted({name for t in study.trials for name in t.params})
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["number", "state", "value", "validations", "duration_s", *names])
        for t in study.trials:
            duration = t.duration.total_seconds() if t.duration else ""
            writer.writerow(
                [t.number, t.state.name, "" if t.value is None else t.value, len(t.intermediate_values)]
                + [round(duration, 1) if duration != "" else ""]
                + [t.params.get(name, "") for name in names]
            )


def plot_history(study: optuna.Study, path: Path) -> None:
    """Validation UAR per trial (pruned trials at their last report, marked x) and the running best."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED and t.intermediate_values]
    ax.plot([t.number for t in done], [t.value for t in done], "o", color="tab:blue", label="complete")
    ax.plot(
        [t.number for t in pruned],
        [t.intermediate_values[t.last_step] for t in pruned],
        "x",
        color="tab:red",
        label="pruned (last report)",
    )
    if done:
        best, xs, ys = -math.inf, [], []
        for t in done:
            best = max(best, t.value)
            xs.append(t.number)
            ys.append(best)
        ax.step(xs, ys, where="post", color="tab:green", label="best so far")
    ax.set(xlabel="trial", ylabel="validation UAR", ylim=(0, 1.02), title="optimisation history")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def open_study(cfg: Config, out: Path, pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    """The study in `out/study.db`: created, or loaded when it exists (and was made with this config)."""
    out.mkdir(parents=True, exist_ok=True)
    # Heartbeats let a later run fail the trial that a killed run left RUNNING.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.RDBStorage(f"sqlite:///{out / 'study.db'}", heartbeat_interval=60)
    study = optuna.create_study(
        storage=storage,
        study_name=STUDY_NAME,
        direction="maximize",
        pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2),
        load_if_exists=True,
    )
    base = study.user_attrs.get("base_config")
    if base is None:
        study.set_user_attr("base_config", _comparable(cfg))
    elif base != _comparable(cfg):
        now = _comparable(cfg)
        keys = [f"{s}.{k}" for s in now for k in now[s] if base.get(s, {}).get(k) != now[s][k]]
        raise ConfigError(
            f"{out / 'study.db'} belongs to a study with another configuration "
            f"({', '.join(keys)} differ): use another --output-dir"
        )
    # Seeded per resumption: the same seed again would repeat the first run's random start-up trials.
    study.sampler = optuna.samplers.TPESampler(seed=cfg.train.seed + len(study.trials), n_startup_trials=5)
    return study


def tune(
    cfg: Config,
    trials: int,
    out: Path,
    space: SearchSpace | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
) -> dict:
    """Run (or continue) the study until it holds `trials` finished trials; write the best config,
    trials.csv and history.png to `out`, and return the best value, params and paths."""
    if trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {trials}")
    out = Path(out)
    space = space or SearchSpace()
    fold = cfg.data.fold or 0
    train_clips = len(load_fold(cfg, fold)[0]["train"])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(cfg, out, pruner)
    remaining = trials - len(study.get_trials(deepcopy=False, states=FINISHED))
    if remaining < trials:
        print(f"continuing the study in {out / 'study.db'}: {max(remaining, 0)} more trial(s)", flush=True)
    if remaining > 0:
        objective = _objective(cfg, out, space, train_clips, fold)
        # A batch size that does not fit the accelerator fails its trial, not the study.
        catch = (torch.OutOfMemoryError,)
        study.optimize(objective, n_trials=remaining, catch=catch, callbacks=[_announce], gc_after_trial=True)
    write_trials_csv(study, out / "trials.csv")
    plot_history(study, out / "history.png")
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise SerError(f"no trial of {out / 'study.db'} completed (all pruned or failed)")
    best = study.best_trial
    tuned = best_config(cfg, best)
    tuned.train.output_dir = str(out / "best-run")  # `ser train --config` it: the run lands beside the study
    header = (
        f"# written by `ser tune`: trial {best.number} of {len(study.trials)}, val UAR {best.value:.4f}\n"
        "# (what differs from the defaults of pipeline/config.py)\n"
    )
    (out / "best_config.yaml").write_text(header + yaml.safe_dump(differences(tuned), sort_keys=False))
    summary = {
        "best_trial": best.number,
        "best_value": best.value,
        "best_params": best.params,
        "best_config": str(out / "best_config.yaml"),
        "trials": {state.name.lower(): len(study.get_trials(states=(state,))) for state in TrialState},
    }
    (out / "best.json").write_text(json.dumps(summary, indent=2))
    return summary
