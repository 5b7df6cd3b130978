"""Both training paths learn the demo corpus: above 0.90 test accuracy on held-out speakers.

The slowest tests of the suite: a full default training each, about 8 minutes on 2 cores."""

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
@pytest.mark.parametrize("trainer", [[], ["--trainer"]], ids=["accelerate-loop", "transformers-trainer"])
def test_default_training_exceeds_90_percent_accuracy(demo_data, tmp_path, trainer):
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
        *trainer,
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trainer"] == ("hf" if trainer else "accelerate")
    assert metrics["test"]["samples"] == 192
    assert metrics["test"]["accuracy"] > 0.90, metrics["test"]
