"""The training loop: batching, schedules, metrics, overfitting, kill-and-resume and a 2-process run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, TINY_TRAIN, ser
from sklearn.metrics import precision_recall_fscore_support, recall_score
from sklearn.utils.class_weight import compute_class_weight

from pipeline.batching import LengthGroupedBatches
from pipeline.checkpoint import STATE_FILE, checkpoint_dirs, prune_checkpoints
from pipeline.config import ModelConfig, TrainConfig
from pipeline.emotion_metric import evaluate_predictions
from pipeline.model import build_model
from pipeline.optim import build_optimizer, build_scheduler, class_weights

LABELS = ["angry", "happy", "neutral", "sad"]
QUIET = ["train.report_to=[]"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_agree_with_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 5, 300)
    y_pred = np.where(rng.random(300) < 0.6, y_true, rng.integers(0, 4, 300))  # class 4 never predicted
    ours = evaluate_predictions(y_true, y_pred, list("abcde"))
    ids = list(range(5))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=ids, zero_division=0
    )
    assert ours["accuracy"] == pytest.approx(np.mean(y_true == y_pred))
    assert ours["uar"] == pytest.approx(recall_score(y_true, y_pred, labels=ids, average="macro"))
    assert ours["macro_f1"] == pytest.approx(f1.mean())
    for i, label in enumerate("abcde"):
        scores = ours["per_class"][label]
        assert scores["precision"] == pytest.approx(precision[i])
        assert scores["recall"] == pytest.approx(recall[i])
        assert scores["f1"] == pytest.approx(f1[i])
        assert scores["support"] == support[i]


def test_length_grouped_batches_cover_every_clip_once_and_cut_padding():
    lengths = np.random.default_rng(0).integers(8_000, 80_000, 203)
    grouped = LengthGroupedBatches(lengths, 16, shuffle=True, seed=3)
    random = LengthGroupedBatches(lengths, 16, shuffle=True, group=False, seed=3)
    first = list(grouped)
    assert sorted(i for batch in first for i in batch) == list(range(203))
    assert len(first) == len(grouped) == 13
    assert list(grouped) == first  # a pure function of (seed, epoch): replayable on resume
    grouped.set_epoch(1)
    assert list(grouped) != first
    assert grouped.padding_fraction(10**6) < 0.5 * random.padding_fraction(10**6)
    evaluation = LengthGroupedBatches(lengths, 16, shuffle=False)
    assert sorted(i for batch in evaluation for i in batch) == list(range(203))


def test_scheduler_warms_up_freezes_the_backbone_then_decays():
    torch.manual_seed(0)
    model = build_model(ModelConfig(), LABELS)
    cfg = TrainConfig(learning_rate=1e-3, head_learning_rate=1e-2, warmup_ratio=0.1, freeze_backbone_steps=30)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, total_steps=100)
    backbone = [i for i, g in enumerate(optimizer.param_groups) if g["backbone"]]
    head = [i for i, g in enumerate(optimizer.param_groups) if not g["backbone"]]
    rates = []
    for _ in range(100):
        rates.append(scheduler.get_last_lr())
        optimizer.step()
        scheduler.step()
    assert all(rates[s][i] == 0 for s in range(30) for i in backbone)
    assert all(rates[s][i] > 0 for s in range(30) for i in head)
    assert rates[5][head[0]] < rates[9][head[0]] <= 1e-2  # warm-up
    assert rates[30][backbone[0]] > 0 and rates[99][backbone[0]] < rates[30][backbone[0]]  # decay
    assert max(r[head[0]] for r in rates) == pytest.approx(1e-2, rel=0.1)


def test_balanced_class_weights_match_scikit_learn():
    rows = ["sad"] * 10 + ["angry"] * 30 + ["happy"] * 5 + ["neutral"] * 55
    ours = class_weights(rows, LABELS, "balanced")
    expected = compute_class_weight("balanced", classes=np.array(LABELS), y=np.array(rows))
    assert np.allclose(ours.numpy(), expected)
    assert class_weights(rows, LABELS, "none") is None


def test_half_written_checkpoints_are_never_picked_up(tmp_path):
    for step in (10, 20, 30):
        (tmp_path / f"step-{step:07d}").mkdir()
        (tmp_path / f"step-{step:07d}" / STATE_FILE).write_text("{}")
    (tmp_path / "step-0000040").mkdir()  # crashed before its state file was written
    (tmp_path / ".step-0000050.tmp").mkdir()  # crashed before the rename
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step-0000010", "step-0000020", "step-0000030"]
    prune_checkpoints(tmp_path, keep=2)
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step-0000020", "step-0000030"]
    assert not (tmp_path / ".step-0000050.tmp").exists()


def test_training_writes_curves_model_card_and_tensorboard_logs(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert (trained / "curves.png").stat().st_size > 0
    assert list((trained / "ser").glob("events.out.tfevents.*")), "no TensorBoard events"
    card = (trained / "best" / "README.md").read_text()
    assert "pipeline_tag: audio-classification" in card
    assert f"{metrics['test']['uar']:.3f}" in card
    assert 0 <= metrics["padding_fraction"] <= metrics["padding_fraction_random_batches"]
    assert (
        metrics["train_log"][0]["step"] == 1 and len(metrics["train_log"]) == metrics["history"][-1]["step"]
    )


def test_overfit_batches_drives_the_loss_near_zero(prepared):
    done = ser("train", "--data", str(prepared), "--overfit-batches", "1", "train.batch_size=4")
    assert "the model can learn" in done.stdout
    final = float(done.stdout.split("->")[1].split()[0])
    assert final < 0.05


def test_sanity_report_describes_the_first_batch(prepared, tmp_path):
    out = tmp_path / "run"
    ser(
        "train",
        "--data",
        str(prepared),
        "--output-dir",
        str(out),
        "--sanity",
        *TINY_TRAIN,
        *QUIET,
        "train.epochs=1",
    )
    report = json.loads((out / "sanity.json").read_text())
    assert report["batch"]["input_values"][0] == 8 and report["input_values"]["finite"]
    assert abs(report["initial_loss"] - report["chance_loss"]) < 0.5
    assert report["gradient_norms"]["classifier"] > 0
    assert sum(report["label_balance"]["train"].values()) == 48


def _run_until_killed(args: list[str], marker, timeout: float = 300) -> None:
    """Starts `ser train`, SIGKILLs it as soon as `marker()` is true."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "train", *args],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    while not marker() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_kill_and_resume_ends_with_the_metrics_of_an_uninterrupted_run(prepared, tmp_path):
    args = ["--data", str(prepared), *TINY_TRAIN, *QUIET, "train.epochs=3", "train.save_every=4"]
    ser("train", *args, "--output-dir", str(tmp_path / "straight"))
    resumed = tmp_path / "resumed"
    _run_until_killed(
        [*args, "--output-dir", str(resumed)], lambda: (resumed / "checkpoints" / "step-0000008").is_dir()
    )
    assert not (resumed / "metrics.json").exists()
    ser("train", *args, "--output-dir", str(resumed), "--resume")
    straight = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    again = json.loads((resumed / "metrics.json").read_text())
    assert [h["val_loss"] for h in again["history"]] == [h["val_loss"] for h in straight["history"]]
    assert again["train_log"] == straight["train_log"]
    assert again["test"] == straight["test"]


def test_two_processes_evaluate_every_sample_exactly_once(prepared, tmp_path):
    """`accelerate launch` with 2 CPU processes (gloo): 16 validation clips in batches of 6 do not
    split evenly, yet each is counted once, and the metrics equal a single-process evaluation."""
    out = tmp_path / "ddp"
    done = subprocess.run(
        [
            "bash",
            str(REPO_ROOT / "scripts" / "finetune.sh"),
            "--data",
            str(prepared),
            "--output-dir",
            str(out),
            *QUIET,
            "train.epochs=2",
            "train.batch_size=6",
            "data.max_train_seconds=1.5",
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHON": sys.executable, "NUM_PROCESSES": "2"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["val_samples"] for h in metrics["history"]] == [16, 16]
    assert metrics["validation"]["samples"] == 16 and metrics["test"]["samples"] == 16
    single = json.loads(
        ser("evaluate", "--checkpoint", str(out / "best"), "--data", str(prepared), "--json").stdout
    )
    assert single["confusion_matrix"] == metrics["test"]["confusion_matrix"]
