"""The training loop: batching, schedules, metrics, overfitting, kill-and-resume and a 2-process run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO_ROOT, TINY_TRAIN, ser
from safetensors.torch import load_file
from sklearn.metrics import precision_recall_fscore_support, recall_score
from sklearn.utils.class_weight import compute_class_weight

from pipeline.config import Config, ModelConfig, TrainConfig
from pipeline.files import fresh_temp_dir, publish_dir, recover_dir
from pipeline.metrics import evaluate_predictions, seed_summary
from pipeline.model import build_feature_extractor, build_model, load_checkpoint
from pipeline.training.batching import LengthGroupedBatches
from pipeline.training.checkpoint import (
    STATE_FILE,
    checkpoint_dirs,
    load_training_state,
    prune_checkpoints,
    recover_checkpoints,
    rng_state,
    save_model_dir,
    save_training_state,
    step_dir,
    trainer_state,
)
from pipeline.training.optim import build_optimizer, build_scheduler, class_weights
from pipeline.training.sanity import loss_floor
from pipeline.training.setup import loss_of, training_loss

LABELS = ["angry", "happy", "neutral", "sad"]
QUIET = ["train.report_to=[]"]


@pytest.mark.fast
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


@pytest.mark.fast
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


@pytest.mark.fast
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


@pytest.mark.fast
def test_balanced_class_weights_match_scikit_learn():
    rows = ["sad"] * 10 + ["angry"] * 30 + ["happy"] * 5 + ["neutral"] * 55
    ours = class_weights(rows, LABELS, "balanced")
    expected = compute_class_weight("balanced", classes=np.array(LABELS), y=np.array(rows))
    assert np.allclose(ours.numpy(), expected)
    assert class_weights(rows, LABELS, "none") is None


@pytest.mark.fast
def test_the_training_loss_smooths_targets_and_weights_classes_validation_does_not():
    """Smoothing ε: the target is 1 - ε on the clip's class plus ε/K on every class (K classes),
    so the loss is (1 - ε) NLL + ε mean(-log p); class weights scale each term by its class's."""
    logits, labels = (
        torch.randn(6, 4, generator=torch.Generator().manual_seed(0)),
        torch.tensor([0, 1, 2, 3, 3, 1]),
    )
    log_p = logits.log_softmax(-1)
    nll, uniform = -log_p[torch.arange(6), labels], -log_p.mean(-1)
    cfg = Config()
    assert cfg.train.label_smoothing == 0.1  # the default
    setup = SimpleNamespace(cfg=cfg, weights=None)
    assert training_loss(setup, logits, labels) == pytest.approx(float((0.9 * nll + 0.1 * uniform).mean()))
    assert loss_of(logits, labels) == pytest.approx(float(nll.mean()))  # validation: plain cross-entropy
    cfg.train.label_smoothing = 0.0
    assert training_loss(setup, logits, labels) == pytest.approx(float(nll.mean()))
    weights = torch.tensor([1.0, 2.0, 3.0, 4.0])
    setup.weights, w = weights, weights[labels]
    assert training_loss(setup, logits, labels) == pytest.approx(float((w * nll).sum() / w.sum()))


@pytest.mark.fast
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
    # the model and its corpus are named (the fixture trains the default small model on the demo corpus)
    index = yaml.safe_load(card.split("---")[1])["model-index"][0]
    assert index["name"] == "ser-synthetic-demo-small-wav2vec2-bert"
    assert index["results"][0]["dataset"]["name"] == "synthetic-demo"
    assert 0 <= metrics["padding_fraction"] <= metrics["padding_fraction_random_batches"]
    assert (
        metrics["train_log"][0]["step"] == 1 and len(metrics["train_log"]) == metrics["history"][-1]["step"]
    )


def test_best_holds_the_final_weights_by_default(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    final = metrics["history"][-1]
    assert metrics["kept"] == "last" and metrics["best_step"] == final["step"] == len(metrics["train_log"])
    assert metrics["best_val_uar"] == final["val_uar"]
    last = checkpoint_dirs(trained / "checkpoints")[-1]
    assert last.name == f"step-{final['step']:07d}"
    kept, trained_to = (load_file(d / "model.safetensors") for d in (trained / "best", last))
    assert kept.keys() == trained_to.keys()
    assert all(torch.equal(kept[k], trained_to[k]) for k in kept)
    assert "the final weights (step" in (trained / "best" / "README.md").read_text()


def test_keep_best_holds_the_weights_of_the_best_validation(straight_run):
    uars = [h["val_uar"] for h in straight_run["history"]]
    assert straight_run["kept"] == "best"
    assert straight_run["best_step"] == straight_run["history"][uars.index(max(uars))]["step"]
    assert straight_run["best_val_uar"] == max(uars)


@pytest.mark.fast
def test_seed_summary_averages_over_seeds_fold_by_fold():
    tests = [
        [{"accuracy": a, "uar": u, "macro_f1": u} for a, u in row]
        for row in ([(0.5, 0.4), (0.7, 0.6)], [(0.7, 0.8), (0.9, 0.6)])
    ]
    summary = seed_summary(tests)["uar"]
    assert summary["per_seed"] == pytest.approx([0.5, 0.7]) and summary["mean"] == pytest.approx(0.6)
    assert summary["std_over_seeds"] == pytest.approx(0.1)
    assert summary["folds"] == pytest.approx([0.6, 0.6]) and summary["fold_std_over_seeds"] == pytest.approx(
        [0.2, 0.0]
    )


def test_seeds_train_once_each_and_report_the_spread_between_them(prepared, tmp_path):
    done = ser("train", "--data", str(prepared), "--output-dir", str(tmp_path), "--seeds", "0,1", *TINY_TRAIN)
    summary = json.loads((tmp_path / "seeds_metrics.json").read_text())
    runs = [json.loads((tmp_path / f"seed{s}" / "metrics.json").read_text()) for s in (0, 1)]
    assert [run["config"]["train"]["seed"] for run in runs] == [0, 1]
    assert summary["uar"]["per_seed"] == pytest.approx([run["test"]["uar"] for run in runs])
    assert summary["protocol"]["chance_uar"] == pytest.approx(0.25) and len(summary["protocol"]["folds"]) == 1
    assert summary["baselines_uar"]["compare"]["folds"] == [runs[0]["baselines"]["compare"]["test"]["uar"]]
    assert (
        f"uar: {summary['uar']['mean']:.3f} ± {summary['uar']['std_over_seeds']:.3f} over 2 seeds"
        in done.stdout
    )


def test_early_stopping_needs_keep_best(prepared, tmp_path, ser_here):
    done = ser_here(
        "train",
        "--data",
        str(prepared),
        "--output-dir",
        str(tmp_path),
        "--early-stopping-patience",
        "2",
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "ser train: error: train.early_stopping_patience keeps the best weights: add --keep best"
    ]
    assert not (tmp_path / "metrics.json").exists()


def test_overfit_batches_drives_the_loss_to_its_floor(prepared, ser_here):
    """Near zero without label smoothing; with it, near the smoothed targets' entropy (4 classes,
    ε 0.1: 0.3488), which no model can go below."""
    assert loss_floor(0.0, 4) == 0.0 and loss_floor(0.1, 4) == pytest.approx(0.3488, abs=1e-4)
    for smoothing in (0.0, 0.1):
        done = ser_here(
            "train",
            "--data",
            str(prepared),
            "--overfit-batches",
            "1",
            "train.batch_size=4",
            f"train.label_smoothing={smoothing}",
        )
        assert "the model can learn" in done.stdout
        final = float(done.stdout.split("->")[1].split()[0])
        assert loss_floor(smoothing, 4) <= final < loss_floor(smoothing, 4) + 0.05


def test_sanity_report_describes_the_first_batch(prepared, tmp_path, ser_here):
    out = tmp_path / "run"
    ser_here(
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
    assert report["batch"]["input_features"][0] == 8 and report["input_features"]["finite"]
    assert abs(report["initial_loss"] - report["chance_loss"]) < 0.5
    assert report["gradient_norms"]["classifier"] > 0
    assert sum(report["label_balance"]["train"].values()) == 48


# Kill-and-resume runs: 4 epochs of 6 steps, a full checkpoint every 4 steps and at each validation.
# `best/` is replaced after every validation that gains (train.keep=best): more writes to kill.
KILL_ARGS = [*TINY_TRAIN, *QUIET, "train.epochs=4", "train.save_every=4", "train.keep=best"]

# Prepended to `ser train` to sleep after every file a checkpoint write makes, so that a kill can
# land inside one (the numbers do not change: only time passes).
SLOW_WRITES = """
import time

import torch
from transformers import PreTrainedModel
from transformers.feature_extraction_utils import FeatureExtractionMixin

import pipeline.training.checkpoint as checkpoint


def slowed(write):
    def wrapper(*args, **kwargs):
        result = write(*args, **kwargs)
        time.sleep({pause})
        return result

    return wrapper


checkpoint.save_file = slowed(checkpoint.save_file)
torch.save = slowed(torch.save)
PreTrainedModel.save_pretrained = slowed(PreTrainedModel.save_pretrained)
FeatureExtractionMixin.save_pretrained = slowed(FeatureExtractionMixin.save_pretrained)
"""


def _run_until_killed(
    args: list[str], marker, timeout: float = 300, delay: float = 0, pause: float = 0
) -> bool:
    """Starts `ser train`, SIGKILLs it `delay` seconds after `marker()` is true; False if it ended
    first. `pause` > 0 sleeps that long after every file of a checkpoint is written."""
    code = (SLOW_WRITES.format(pause=pause) if pause else "") + (
        "import sys\nfrom pipeline.cli import main\nsys.exit(main(['train', *sys.argv[1:]]))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    while not marker() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(delay)
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


@pytest.fixture(scope="module")
def straight_run(prepared, tmp_path_factory) -> dict:
    """metrics.json of an uninterrupted run with the kill tests' settings."""
    out = tmp_path_factory.mktemp("straight")
    ser("train", "--data", str(prepared), *KILL_ARGS, "--output-dir", str(out))
    return json.loads((out / "metrics.json").read_text())


def _assert_same_run(again: dict, straight: dict) -> None:
    assert [h["val_loss"] for h in again["history"]] == [h["val_loss"] for h in straight["history"]]
    assert again["train_log"] == straight["train_log"]
    assert again["test"] == straight["test"]


@pytest.mark.parametrize("step", [8, 12], ids=["mid-epoch", "epoch-end"])
def test_kill_and_resume_ends_with_the_metrics_of_an_uninterrupted_run(
    prepared, straight_run, tmp_path, step
):
    """Killed as soon as the checkpoint of `step` appears. At the end of an epoch (step 12) the
    validation comes after: a checkpoint published before it would resume past it (regression)."""
    args = ["--data", str(prepared), *KILL_ARGS, "--output-dir", str(tmp_path)]
    checkpoint = tmp_path / "checkpoints" / f"step-{step:07d}"
    assert _run_until_killed(args, checkpoint.is_dir, pause=0.3)
    assert not (tmp_path / "metrics.json").exists()
    ser("train", *args, "--resume")
    _assert_same_run(json.loads((tmp_path / "metrics.json").read_text()), straight_run)


def _assert_intact(out, clip: np.ndarray) -> None:
    """What no kill may break: best/ (when there is one) loads and predicts, and every checkpoint
    `--resume` could pick is complete and loads (weights, optimizer, scheduler, RNG)."""
    from transformers import AutoFeatureExtractor

    best = out / "best"
    if best.exists():
        model = load_checkpoint(best)
        inputs = AutoFeatureExtractor.from_pretrained(best)(clip, sampling_rate=16000, return_tensors="pt")
        with torch.no_grad():
            probabilities = model(**inputs).logits.softmax(-1)
        assert probabilities.shape == (1, len(LABELS)) and torch.isfinite(probabilities).all()
    root = out / "checkpoints"
    visible = sorted(root.glob("step-*"))
    assert checkpoint_dirs(root) == visible, "a step-N directory without its state file is visible"
    for path in visible:
        assert trainer_state(path)["state"]["step"] == int(path.name.removeprefix("step-"))
        load_training_state(path, ["optimizer", "scheduler", "rng_0"])


def _newest_step(root) -> int:
    found = checkpoint_dirs(root)
    return int(found[-1].name.removeprefix("step-")) if found else 0


def _writing_checkpoint_after(root, step: int) -> bool:
    """A checkpoint of a step after `step` is being written (its temporary directory exists)."""
    return any(int(p.name.split(".")[1].removeprefix("step-")) > step for p in root.glob(".step-*.tmp"))


@pytest.mark.slow
def test_repeated_kills_at_random_moments_then_resume_completes(prepared, straight_run, tmp_path):
    """Four SIGKILLs at moments drawn from a seeded RNG: inside the first write of best/, inside a
    full-state checkpoint write (both slowed down so that the kill lands there), and twice at a random
    time after a new checkpoint. After each, `ser train --resume` goes on; the last one completes the
    run with an intact `best/` and exactly the metrics of an uninterrupted run."""
    rng = random.Random(1123)
    out, pause = tmp_path / "run", 0.3
    root = out / "checkpoints"
    args = ["--data", str(prepared), *KILL_ARGS, "--output-dir", str(out), "--resume"]
    clip = np.sin(np.arange(16000, dtype=np.float32) / 7)
    kills = []
    for what in ("best/ write", "checkpoint write", "random", "random"):
        start = _newest_step(root)
        if what == "best/ write":  # the first validation always writes best/
            marker, delay, trace = (lambda: (out / ".best.tmp").is_dir()), rng.uniform(0, 0.4), ".best.tmp"
        elif what == "checkpoint write":
            marker, delay = (lambda start=start: _writing_checkpoint_after(root, start)), rng.uniform(0, 0.9)
            trace = "checkpoints/.step-*.tmp"
        else:
            marker, delay, trace = (lambda start=start: _newest_step(root) > start), rng.uniform(0, 1.5), None
        assert _run_until_killed(args, marker, delay=delay, pause=pause), (
            f"the run ended before the kill ({what})"
        )
        if trace:
            assert list(out.glob(trace)), f"the kill ({what}) did not land inside the write"
        _assert_intact(out, clip)
        kills.append((what, start, _newest_step(root)))
    print("kills (what, resumed from step, newest complete checkpoint after the kill):", kills)
    done = ser("train", *args)
    assert f"resuming from {root / f'step-{kills[-1][2]:07d}'}" in done.stdout
    _assert_same_run(json.loads((out / "metrics.json").read_text()), straight_run)
    _assert_intact(out, clip)
    assert not list(out.glob(".*.tmp")) and not list(root.glob(".*"))


# Crash points: a forked child SIGKILLs itself just before its n-th call of one of these, for n = 1, 2,
# ... until the write completes, so that every intermediate state on disk is met once.
CRASH_POINTS = ("fsync", "rename", "replace", "unlink", "remove", "rmdir")


def _crash_at(n: int, write) -> bool:
    """Runs `write()` in a forked child killed just before its n-th crash point; False if it finished."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            calls = [0]

            def dying(original):
                def wrapper(*args, **kwargs):
                    calls[0] += 1
                    if calls[0] == n:
                        os.kill(os.getpid(), signal.SIGKILL)
                    return original(*args, **kwargs)

                return wrapper

            for name in CRASH_POINTS:
                setattr(os, name, dying(getattr(os, name)))
            write()
            os._exit(0)
        except BaseException:
            os._exit(1)
    deadline = time.monotonic() + 60
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the child writing with crash point {n} hung")
        time.sleep(0.005)
    status = done[1]
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL
        return True
    assert os.WEXITSTATUS(status) == 0, "the write failed in the child"
    return False


def test_a_crash_anywhere_in_replacing_best_leaves_one_complete_version(tmp_path):
    torch.manual_seed(0)
    old, new = build_model(ModelConfig(), LABELS), build_model(ModelConfig(), LABELS)
    extractor = build_feature_extractor(ModelConfig())

    def version(best) -> str:
        weight = load_checkpoint(best).classifier.weight
        return "old" if torch.equal(weight, old.classifier.weight) else "new"

    seen, missing = [], 0
    for n in range(1, 100):
        best = tmp_path / str(n) / "best"
        save_model_dir(old, extractor, best)
        killed = _crash_at(n, lambda best=best: save_model_dir(new, extractor, best))
        if best.exists():
            seen.append(version(best))  # as a reader finds it, before any repair
        else:
            missing += 1  # killed between the two renames: the old version waits aside
        recover_dir(best)  # what `ser train` does first
        assert version(best) in ("old", "new") and not list(best.parent.glob(".best*"))
        if not killed:
            assert version(best) == "new"
            break
    assert n > 8 and {"old", "new"} <= set(seen) and missing >= 1, (n, seen, missing)


def test_a_crash_anywhere_in_saving_a_training_state_never_exposes_a_partial_one(tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelConfig(), LABELS)
    optimizer = build_optimizer(model, TrainConfig())
    states = {"optimizer": optimizer.state_dict(), "rng_0": rng_state()}

    def save(root, step):
        target = step_dir(root, step)
        tmp = fresh_temp_dir(target)
        save_training_state(
            tmp, model_state=model.state_dict(), states=states, trainer_state={"state": {"step": step}}
        )
        publish_dir(tmp, target)
        prune_checkpoints(root, keep=2)

    for n in range(1, 200):
        root = tmp_path / str(n)
        save(root, 10)
        save(root, 20)
        killed = _crash_at(n, lambda root=root: save(root, 30))
        visible = sorted(root.glob("step-*"))
        assert checkpoint_dirs(root) == visible, (n, [p.name for p in root.iterdir()])
        assert _newest_step(root) in (20, 30)
        for path in visible:
            load_training_state(path, ["optimizer", "rng_0"])
        recover_checkpoints(root)
        assert not list(root.glob(".*")) and _newest_step(root) in (20, 30)
        if not killed:
            assert [p.name for p in visible] == ["step-0000020", "step-0000030"]
            break
    assert n > 10


SAVED_ACCELERATE_CONFIG = {  # what `accelerate config` saves for two processes on one machine
    "compute_environment": "LOCAL_MACHINE",
    "distributed_type": "MULTI_GPU",  # torchrun's processes; finetune.sh puts them on the CPU here (gloo)
    "mixed_precision": "no",
    "num_machines": 1,
    "machine_rank": 0,
    "num_processes": 2,
    "rdzv_backend": "static",
    "same_network": True,
    "use_cpu": False,
    "gpu_ids": "all",
}


def test_two_processes_evaluate_every_sample_exactly_once(prepared, tmp_path, ser_here):
    """`scripts/finetune.sh` under a saved `accelerate config` of 2 CPU processes (gloo), no
    variables set: the saved config is what runs. 16 validation clips in batches of 6 do not split
    evenly, yet each is counted once, and the metrics equal a single-process evaluation."""
    hf_home = tmp_path / "hf"
    (hf_home / "accelerate").mkdir(parents=True)
    (hf_home / "accelerate" / "default_config.yaml").write_text(json.dumps(SAVED_ACCELERATE_CONFIG))
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
        env={**os.environ, "PYTHON": sys.executable, "HF_HOME": str(hf_home)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == 2  # the saved config's
    assert [h["val_samples"] for h in metrics["history"]] == [16, 16]
    assert metrics["validation"]["samples"] == 16 and metrics["test"]["samples"] == 16
    single = json.loads(
        ser_here("evaluate", "--checkpoint", str(out / "best"), "--data", str(prepared), "--json").stdout
    )
    assert single["confusion_matrix"] == metrics["test"]["confusion_matrix"]
