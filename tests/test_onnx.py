"""The ONNX Runtime backend: exported once, equal to PyTorch in fp32, close in int8, refused clearly
where it cannot run."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
import torch
from helpers import make_tiny_checkpoint, tone, write_tone

from pipeline.config import ModelConfig
from pipeline.data.audio import load_audio
from pipeline.errors import ConfigError, SerError
from pipeline.frontend import FrontEnd
from pipeline.functionals import functionals
from pipeline.fusion import FunctionalsHead
from pipeline.inference import backends, onnx_export
from pipeline.inference.backends import resolve_backend
from pipeline.inference.onnx_export import export_onnx
from pipeline.inference.onnx_model import ONNX_DIR, OnnxClassifier, has_onnx
from pipeline.inference.predictor import TEMPERATURE_KEY, Predictor
from pipeline.inference.torch_model import TorchFrontEnd
from pipeline.model import build_feature_extractor, build_model

pytestmark = pytest.mark.fast
LENGTHS = (48_000, 3_000, 160_000, 16_000)  # none of them the length the export traced


def _log_mel_checkpoint(directory):
    torch.manual_seed(0)
    cfg = ModelConfig(architecture="wav2vec2-bert")
    build_model(cfg, ["angry", "happy", "neutral", "sad"]).save_pretrained(directory)
    build_feature_extractor(cfg).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module", params=["wav2vec2-bert", "wav2vec2-group-norm"])
def exported(request, tmp_path_factory):
    """A checkpoint of each front end with `onnx/` written by `export_onnx`."""
    directory = tmp_path_factory.mktemp(request.param)
    if request.param == "wav2vec2-bert":
        checkpoint = _log_mel_checkpoint(directory)
    else:
        checkpoint = make_tiny_checkpoint(directory, norm="group")
    export_onnx(checkpoint, checkpoint / ONNX_DIR)
    return checkpoint


def _waves():
    rng = np.random.default_rng(0)
    return [(rng.standard_normal(n) * 0.1).astype(np.float32) for n in LENGTHS]


def test_onnx_fp32_equals_pytorch_for_any_length_and_batch(exported):
    """The serving install's path (ONNX Runtime, the features in numpy) against the torch path (the
    features training computed): the same logits to 1e-4, alone or in a batch."""
    torch_predictor = Predictor.from_pretrained(exported, precision="fp32", backend="torch")
    assert isinstance(torch_predictor.front_end, TorchFrontEnd)
    onnx_predictor = Predictor.from_pretrained(exported, precision="auto")  # auto: onnx/ is there
    assert isinstance(onnx_predictor.front_end, FrontEnd) and isinstance(
        onnx_predictor.classifier, OnnxClassifier
    )
    assert (onnx_predictor.precision, onnx_predictor.device) == ("fp32", "cpu")
    batch = onnx_predictor.logits(_waves())
    np.testing.assert_allclose(batch, torch_predictor.logits(_waves()), atol=1e-4, rtol=0)
    alone = np.concatenate([onnx_predictor.logits([wave]) for wave in _waves()])
    np.testing.assert_allclose(alone, batch, atol=1e-5, rtol=0)


def test_the_serving_path_answers_files_of_any_rate_as_the_torch_path(exported, tmp_path):
    """Clips of several rates, channel counts and lengths, decoded and resampled from files: the
    serving path's probabilities equal the torch path's within 1e-4 (a functionals head and a
    temperature on top, as the default recipe saves them)."""
    checkpoint = tmp_path / "fused"
    shutil.copytree(exported, checkpoint)
    waves = [tone(1.0, f0=f0, seed=i) for i, f0 in enumerate((110.0, 150.0, 210.0, 300.0))]
    head = FunctionalsHead.fit(functionals(waves, 16_000, "egemaps"), np.arange(4), 4, "egemaps", 16_000, 0.4)
    head.save(checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps({**config, TEMPERATURE_KEY: 0.7}))
    files = [
        write_tone(tmp_path / f"clip{sr}-{channels}.{kind}", seconds=seconds, sr=sr, channels=channels, f0=f0)
        for sr, channels, seconds, f0, kind in (
            (16_000, 1, 1.5, 180.0, "wav"),
            (8_000, 1, 0.7, 120.0, "wav"),
            (22_050, 2, 2.2, 240.0, "flac"),
            (44_100, 2, 3.1, 200.0, "flac"),
            (48_000, 1, 4.0, 160.0, "ogg"),
        )
    ]
    serving = Predictor.from_pretrained(checkpoint, precision="fp32", backend="onnx")
    training = Predictor.from_pretrained(checkpoint, precision="fp32", backend="torch")
    assert serving.head is not None and serving.temperature == 0.7
    waves = [load_audio(path) for path in files]
    np.testing.assert_allclose(serving.probabilities(waves), training.probabilities(waves), atol=1e-4, rtol=0)


def test_onnx_int8_quantizes_the_matrix_products_and_stays_close(exported):
    graph = onnx.load(exported / ONNX_DIR / "model.int8.onnx").graph
    assert any(node.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for node in graph.node)
    fp32 = Predictor.from_pretrained(exported, precision="fp32", backend="onnx").probabilities(_waves())
    int8 = Predictor.from_pretrained(exported, precision="int8", backend="onnx").probabilities(_waves())
    assert 0 < np.abs(int8 - fp32).max() < 0.02


def test_a_checkpoint_without_onnx_is_exported_once_per_process(tmp_path, monkeypatch):
    checkpoint = _log_mel_checkpoint(tmp_path / "ckpt")
    exports = []
    real_export = onnx_export.export_onnx
    monkeypatch.setattr(onnx_export, "export_onnx", lambda *a: exports.append(a) or real_export(*a))
    backends._exported_for_this_process.cache_clear()
    first, second = backends.onnx_file(checkpoint, "fp32"), backends.onnx_file(checkpoint, "int8")
    assert first.is_file() and second.is_file() and len(exports) == 1
    assert not (checkpoint / ONNX_DIR).exists()  # the checkpoint directory is left as it was


def test_the_onnx_backend_refuses_what_it_cannot_run(exported, tmp_path):
    with pytest.raises(ConfigError, match="fp32 or int8, not bf16"):
        Predictor.from_pretrained(exported, precision="bf16", backend="onnx")
    with pytest.raises(ConfigError, match="runs on the CPU, not cuda"):
        Predictor.from_pretrained(exported, device="cuda", backend="onnx")
    with pytest.raises(ConfigError, match="unknown backend 'tensorrt'"):
        Predictor.from_pretrained(exported, backend="tensorrt")
    damaged = shutil.copytree(exported, tmp_path / "damaged")
    (damaged / ONNX_DIR / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(SerError, match=r"cannot load the ONNX model .*model.onnx") as err:
        Predictor.from_pretrained(damaged, precision="fp32", backend="onnx")
    assert "\n" not in str(err.value)


def test_onnx_models_of_other_weights_are_not_run(exported, tmp_path, monkeypatch):
    """A checkpoint trained again into the same directory keeps its predecessor's `onnx/` until the
    next `ser export`: the weights' digest tells them apart, and such models are not run (the full
    install exports the current weights for the process; the serving install says what to do)."""
    checkpoint = shutil.copytree(exported, tmp_path / "retrained")
    assert has_onnx(checkpoint)
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")  # other weights, the same size
    assert not has_onnx(checkpoint)
    assert resolve_backend("auto", checkpoint, None) == "torch"  # the full install: PyTorch runs it
    monkeypatch.setattr(backends, "torch_installed", lambda: False)  # as the serving install
    assert resolve_backend("auto", checkpoint, None) == "onnx"
    with pytest.raises(SerError, match="has no onnx/ models of its weights: run `ser export"):
        backends.onnx_file(checkpoint, "fp32")
