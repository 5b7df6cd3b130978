"""`ser train --trainer hf`: the transformers.Trainer path writes our outputs and trains like our loop."""

from __future__ import annotations

import json

import pytest
from conftest import REPO_ROOT, TINY_TRAIN, ser


@pytest.fixture(scope="module")
def hf_trained(prepared, tmp_path_factory):
    """The session's `trained` run again (same config, data and seed), through transformers.Trainer."""
    out = tmp_path_factory.mktemp("hf_run")
    paths = ["--config", str(REPO_ROOT / "configs" / "default.yaml"), "--data", str(prepared)]
    ser("train", "--trainer", "hf", *paths, "--output-dir", str(out), *TINY_TRAIN)
    return out


def test_trainer_path_writes_our_outputs(hf_trained, prepared, ser_here):
    metrics = json.loads((hf_trained / "metrics.json").read_text())
    assert metrics["trainer"] == "hf"
    assert [h["epoch"] for h in metrics["history"]] == [1.0, 2.0]  # one validation per epoch
    assert metrics["best_step"] in [h["step"] for h in metrics["history"]]
    assert (hf_trained / "curves.png").stat().st_size > 0
    assert "transformers.Trainer" in (hf_trained / "best" / "README.md").read_text()
    for checkpoint in hf_trained.glob("checkpoint-*"):  # Trainer's own, kept for --resume
        assert (checkpoint / "model.safetensors").is_file()
        assert not list(checkpoint.glob("pytorch_model*"))  # no pickled weights
    # `ser evaluate` loads best/ with `load_checkpoint` (safetensors only) and scores it our way
    done = ser_here("evaluate", "--checkpoint", str(hf_trained / "best"), "--data", str(prepared), "--json")
    evaluated = json.loads(done.stdout.strip().splitlines()[-1])
    assert evaluated["labels"] == metrics["test"]["labels"]
    assert evaluated["confusion_matrix"] == metrics["test"]["confusion_matrix"]


def test_trainer_path_trains_like_our_loop(hf_trained, trained):
    """Same initial weights, batches, crops, dropout stream, optimizer, schedule and loss: the same run."""
    ours = json.loads((trained / "metrics.json").read_text())
    theirs = json.loads((hf_trained / "metrics.json").read_text())
    for run in (ours, theirs):
        run["config"]["train"].pop("output_dir")
        run["config"]["train"].pop("trainer")
    assert theirs["config"] == ours["config"], "the `trained` fixture no longer matches this module's run"
    assert [r["step"] for r in theirs["train_log"]] == [r["step"] for r in ours["train_log"]]
    assert abs(theirs["train_log"][0]["loss"] - ours["train_log"][0]["loss"]) < 1e-5  # same init and batch
    for a, b in zip(theirs["train_log"], ours["train_log"]):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-4)
        assert a["lr"] == pytest.approx(b["lr"], rel=1e-6)
    exact = ("step", "epoch", "val_accuracy", "val_uar", "val_macro_f1", "val_samples")
    for a, b in zip(theirs["history"], ours["history"], strict=True):
        assert {k: a[k] for k in exact} == {k: b[k] for k in exact}
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-4)
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-4)
    assert theirs["best_step"] == ours["best_step"]
    assert theirs["test"]["confusion_matrix"] == ours["test"]["confusion_matrix"]
