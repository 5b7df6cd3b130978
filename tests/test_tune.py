"""`ser tune` (Optuna search, pruning, resumption) and `ser lr-find` (learning-rate range test)."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import re

import numpy as np
import optuna
import pytest
import torch
from conftest import REPO_ROOT, ser

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.errors import ConfigError, SerError
from pipeline.training.lr_find import suggest_lr
from pipeline.training.tune import STUDY_NAME, tune

CONFIG = str(REPO_ROOT / "configs" / "default.yaml")
TINY = ["train.epochs=2", "data.max_train_seconds=1.0", "data.max_eval_seconds=2.0"]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # the tiny model is far faster single-threaded on a busy machine


@contextlib.contextmanager
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def load_study(out) -> optuna.Study:
    return optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{out / 'study.db'}")


def read_trials(out) -> list[dict]:
    with open(out / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_tune_writes_the_best_config_and_resumes(prepared, tmp_path):
    out = tmp_path / "tune"
    args = ["tune", "--config", CONFIG, "--data", str(prepared), "--output-dir", str(out), *TINY]
    done = ser(*args, "--trials", "3", env=ONE_THREAD)
    assert "best val UAR" in done.stdout and str(out / "best_config.yaml") in done.stdout
    assert len(read_trials(out)) == 3
    assert (out / "history.png").stat().st_size > 0
    assert not list(out.glob("trial-*/checkpoints")), "trial checkpoints are deleted"

    best = load_study(out).best_trial
    cfg = load_config(out / "best_config.yaml")
    assert cfg.train.learning_rate == best.params["learning_rate"]
    assert cfg.train.batch_size == best.params["batch_size"]
    assert cfg.model.dropout == best.params["dropout"]
    assert cfg.model.freeze_feature_encoder == best.params["freeze_feature_encoder"]
    assert cfg.train.freeze_backbone_steps == best.user_attrs["freeze_backbone_steps"]
    assert (cfg.train.epochs, cfg.data.path) == (2, str(prepared))

    same = load_config(CONFIG, [f"data.path={prepared}", *TINY])  # as the CLI built it, or tune refuses
    with one_thread():
        tune(same, 4, out)
    rows = read_trials(out)
    assert [row["number"] for row in rows] == ["0", "1", "2", "3"]
    assert (out / "trial-003").is_dir()
    with pytest.raises(ConfigError, match="train.epochs"):  # another search space: another study
        tune(load_config(CONFIG, [f"data.path={prepared}", *TINY, "train.epochs=3"]), 5, out)


def test_pruned_trials_stop_training(prepared, tmp_path):
    out = tmp_path / "tune"
    cfg = load_config(CONFIG, [f"data.path={prepared}", *TINY])
    pruner = optuna.pruners.ThresholdPruner(lower=1.1)  # no UAR reaches 1.1: prune at the first report
    with one_thread(), pytest.raises(SerError, match="no trial"):
        tune(cfg, 2, out, pruner=pruner)
    trials = load_study(out).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.PRUNED] * 2
    for t in trials:
        assert len(t.intermediate_values) == 1
        assert len(t.user_attrs["validation_steps"]) == 1  # of the 2 epochs' validations
        run = out / f"trial-{t.number:03d}"
        assert not (run / "metrics.json").exists() and not (run / "checkpoints").exists()
    assert [row["state"] for row in read_trials(out)] == ["PRUNED", "PRUNED"]
    assert (out / "history.png").exists()


@pytest.mark.fast
def test_suggest_lr_is_the_steepest_descent():
    lrs = np.logspace(-7, 1, 81)  # 10 points per decade
    x = np.log10(lrs)
    losses = 1.4 - 1.0 / (1 + np.exp(-3 * (x + 3)))  # falls fastest at 1e-3
    losses[:3] += [2.0, 1.0, 0.0]  # a noisy start ...
    losses[-1] -= 5.0  # ... and end, both steeper: ignored
    assert suggest_lr(lrs, losses) == pytest.approx(1e-3, rel=1e-6)


def test_lr_find_suggests_a_learning_rate(prepared, tmp_path, capsys):
    out = tmp_path / "lr"
    ratios = ["train.learning_rate=1e-3", "train.head_learning_rate=1e-2"]
    common = ["train.batch_size=8", "data.max_train_seconds=1.0", *ratios]
    args = ["lr-find", "--config", CONFIG, "--data", str(prepared), "--output-dir", str(out)]
    with one_thread():
        assert main([*args, "--steps", "30", *common]) == 0  # in-process: spares a 20 s import
    found = re.search(
        r"suggested learning rate: (\S+) \(set train.learning_rate=(\S+)\)", capsys.readouterr().out
    )
    assert found and found[1] == found[2]
    result = json.loads((out / "lr_find.json").read_text())
    lrs, losses = result["lrs"], result["losses"]
    assert 3 <= len(lrs) == len(losses) <= 30
    assert lrs[0] == pytest.approx(1e-7) and np.all(np.diff(np.log10(lrs)) > 0)
    assert abs(losses[0] - math.log(4)) < 0.3  # at 1e-7 nothing is learned: chance level
    assert 1e-7 <= result["suggestion"] <= 10 and result["suggestion"] in lrs
    assert sorted(set(result["group_lr_ratios"])) == pytest.approx([1.0, 10.0])  # head keeps its 10x
    assert f"{result['suggestion']:.2e}" == found[1]
    assert load_config(None, [f"train.learning_rate={found[1]}"]).train.learning_rate > 0
    assert (out / "lr_find.png").stat().st_size > 0
