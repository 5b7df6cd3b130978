"""Shared fixtures: one tiny demo corpus, prepared once, trained once, for the whole session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["BENTOML_DO_NOT_TRACK"] = "True"

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_TRAIN = ["train.epochs=2", "train.batch_size=8", "data.max_train_seconds=1.5"]


def ser(*args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real `ser` console command."""
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    if check and done.returncode != 0:
        raise AssertionError(f"ser {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    ser("synth", "--out", str(out), "--speakers", "5", "--utterances", "4", "--seed", "1")
    return out


@pytest.fixture(scope="session")
def prepared(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared")
    ser("prepare", "--corpus", "auto", "--data-dir", str(corpus), "--out", str(out))
    return out


@pytest.fixture(scope="session")
def trained(prepared, tmp_path_factory) -> Path:
    """A run directory holding best/ and metrics.json from a 2-epoch run of the tiny model."""
    out = tmp_path_factory.mktemp("run")
    ser(
        "train",
        "--config",
        str(REPO_ROOT / "configs" / "default.yaml"),
        "--data",
        str(prepared),
        "--output-dir",
        str(out),
        *TINY_TRAIN,
    )
    return out
