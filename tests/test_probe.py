"""The frozen-backbone probe: cached features, a head equal to the saved model, a checkpoint `ser` accepts.
It reads waveform models: the tests probe the small wav2vec2 (the default, log-mel, is refused)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, ser
from safetensors.torch import load_file

from pipeline.config import load_config
from pipeline.data.prepared import load_prepared
from pipeline.errors import SerError
from pipeline.inference.predictor import Predictor
from pipeline.training.probe import head_logits, train_probe

PROBE = ["train.epochs=3", "train.batch_size=8", "model.architecture=wav2vec2"]


def _config(prepared: Path, out: Path, *overrides: str):
    return load_config(
        REPO_ROOT / "configs" / "default.yaml",
        [f"data.path={prepared}", f"train.output_dir={out}", *PROBE, *overrides],
    )


@pytest.fixture(scope="module")
def prepared(corpus, tmp_path_factory) -> Path:
    """In place of the session's: its corpus prepared for the small wav2vec2."""
    out = tmp_path_factory.mktemp("prepared-waveform")
    ser("prepare", "--architecture", "wav2vec2", "--data-dir", str(corpus), "--output-dir", str(out))
    return out


def test_a_feature_model_is_refused_in_one_line(corpus, tmp_path):
    data = tmp_path / "log-mel"
    ser("prepare", "--data-dir", str(corpus), "--output-dir", str(data))
    cfg = load_config(None, [f"data.path={data}", f"train.output_dir={tmp_path / 'run'}"])
    with pytest.raises(SerError, match="ser probe reads models of the waveform.*SeamlessM4TFeatureExtractor"):
        train_probe(cfg)


@pytest.fixture(scope="module")
def probed(prepared, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("probe")
    return out, train_probe(_config(prepared, out))


def test_saved_checkpoint_equals_head_on_cached_features(prepared, probed):
    out, results = probed
    predictor = Predictor.from_pretrained(out / "best")
    assert predictor.classifier.model.config.use_weighted_layer_sum
    clips = load_prepared(prepared)[0]["validation"].with_format("numpy")["input_values"][:4]
    audio_logits = torch.from_numpy(np.concatenate([predictor.logits([clip]) for clip in clips]))
    batch_logits = torch.from_numpy(predictor.logits(list(clips)))  # padded together, as `ser evaluate` does
    features = load_file(Path(results["cache"]) / "validation.safetensors")["features"][:4]
    with torch.no_grad():
        cached_logits = head_logits(predictor.classifier.model, features)
    torch.testing.assert_close(cached_logits, audio_logits, atol=1e-4, rtol=0)
    torch.testing.assert_close(cached_logits, batch_logits, atol=1e-4, rtol=0)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mode"] == "probe" and metrics["test"] == results["test"]
    assert sum(metrics["layer_weights"]) == pytest.approx(1.0)
    assert json.loads((out / "best" / "metrics.json").read_text()) == results["test"]


def test_features_are_cached_per_backbone(prepared, probed, tmp_path, capsys):
    _, results = probed
    files = sorted(Path(results["cache"]).glob("*.safetensors"))
    assert [f.name for f in files] == ["test.safetensors", "train.safetensors", "validation.safetensors"]
    stamps = [f.stat().st_mtime_ns for f in files]
    capsys.readouterr()
    again = train_probe(_config(prepared, tmp_path / "again"))
    assert capsys.readouterr().out.count("cached in") == 3
    assert again["cache"] == results["cache"]
    assert [f.stat().st_mtime_ns for f in files] == stamps
    assert again["test"] == results["test"]  # same seed, same features: the same head
    other = train_probe(_config(prepared, tmp_path / "other", "train.seed=1", "train.epochs=1"))
    assert other["cache"] != results["cache"]  # another random backbone, other features


def test_probe_command_writes_a_checkpoint_evaluate_accepts(prepared, probed, tmp_path, ser_here):
    out = tmp_path / "run"
    done = ser_here("probe", "--data", str(prepared), "--output-dir", str(out), *PROBE)
    assert "test: accuracy" in done.stdout and str(out / "best") in done.stdout
    evaluated = ser_here("evaluate", "--checkpoint", str(out / "best"), "--data", str(prepared), "--json")
    metrics = json.loads((out / "metrics.json").read_text())
    assert json.loads(evaluated.stdout)["confusion_matrix"] == metrics["test"]["confusion_matrix"]
