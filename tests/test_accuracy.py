"""The default recipe learns the demo corpus: above 0.90 test accuracy on held-out speakers.

The longest job of the suite is the full default training (synthesize, prepare, train: about 5
minutes on one core). It starts with the run, on one thread, beside the other tests
(`default_training` in conftest.py), and this test, collected last, waits for it. One thread also
makes its trajectory independent of the machine's load: with two threads MKL's dynamic threading
took another trajectory when the machine was busy. One training only: the Trainer path takes the
same steps as our loop (tests/test_hf_trainer.py checks it step by step at small scale)."""

from __future__ import annotations

import json

import pytest


@pytest.mark.timeout(2400)  # the wait for the background training counts
def test_default_training_exceeds_90_percent_accuracy(default_training):
    metrics = json.loads((default_training / "metrics.json").read_text())
    assert metrics["trainer"] == "accelerate"
    assert metrics["test"]["samples"] == 192
    assert metrics["test"]["accuracy"] > 0.90, metrics["test"]
