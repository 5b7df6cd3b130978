"""The default recipe learns the demo corpus: above 0.90 test accuracy on held-out speakers.

The slowest test of the suite: a full default training, about 8 minutes on 2 cores. One training
only: the Trainer path takes the same steps as our loop (tests/test_hf_trainer.py checks it step
by step at small scale), so a second full training would check nothing new."""

from __future__ import annotations

import json

import pytest
from conftest import REPO_ROOT, ser


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    """The default demo corpus (40 speakers, 960 clips), prepared."""
    root = tmp_path_factory.mktemp("demo")
    ser("synth", "--out", str(root / "corpus"))
    ser(
        "prepare",
        "--corpus",
        "auto",
        "--data-dir",
        str(root / "corpus"),
        "--out",
        str(root / "data"),
        "--num-proc",
        "2",
    )
    return root / "data"


@pytest.mark.timeout(2400)
def test_default_training_exceeds_90_percent_accuracy(demo_data, tmp_path):
    out = tmp_path / "run"
    ser(
        "train",
        "--config",
        str(REPO_ROOT / "configs" / "default.yaml"),
        "--data",
        str(demo_data),
        "--output-dir",
        str(out),
        "train.report_to=[]",
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trainer"] == "accelerate"
    assert metrics["test"]["samples"] == 192
    assert metrics["test"]["accuracy"] > 0.90, metrics["test"]
