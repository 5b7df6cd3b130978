"""The ONNX Runtime backend: exported once, equal to PyTorch in fp32, close in int8, refused clearly
where it cannot run."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from helpers import make_tiny_checkpoint

from pipeline.config import ModelConfig
from pipeline.errors import ConfigError, SerError
from pipeline.inference import onnx_model
from pipeline.inference.onnx_model import ONNX_DIR, export_onnx, onnx_file
from pipeline.inference.predictor import Predictor
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
    torch_logits = Predictor.from_pretrained(exported, precision="fp32").logits(_waves())
    onnx_predictor = Predictor.from_pretrained(exported, precision="auto", backend="onnx")
    assert (onnx_predictor.precision, str(onnx_predictor.device)) == ("fp32", "cpu")
    batch = onnx_predictor.logits(_waves())
    torch.testing.assert_close(batch, torch_logits, atol=1e-4, rtol=0)
    alone = torch.cat([onnx_predictor.logits([wave]) for wave in _waves()])
    torch.testing.assert_close(alone, batch, atol=1e-5, rtol=0)


def test_onnx_int8_quantizes_the_matrix_products_and_stays_close(exported):
    graph = onnx.load(exported / ONNX_DIR / "model.int8.onnx").graph
    assert any(node.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for node in graph.node)
    fp32 = Predictor.from_pretrained(exported, precision="fp32", backend="onnx").probabilities(_waves())
    int8 = Predictor.from_pretrained(exported, precision="int8", backend="onnx").probabilities(_waves())
    assert 0 < np.abs(int8 - fp32).max() < 0.02


def test_a_checkpoint_without_onnx_is_exported_once_per_process(tmp_path, monkeypatch):
    checkpoint = _log_mel_checkpoint(tmp_path / "ckpt")
    exports = []
    real_export = onnx_model.export_onnx
    monkeypatch.setattr(onnx_model, "export_onnx", lambda *a: exports.append(a) or real_export(*a))
    onnx_model._exported_for_this_process.cache_clear()
    first, second = onnx_file(checkpoint, "fp32"), onnx_file(checkpoint, "int8")
    assert first.is_file() and second.is_file() and len(exports) == 1
    assert not (checkpoint / ONNX_DIR).exists()  # the checkpoint directory is left as it was


def test_the_onnx_backend_refuses_what_it_cannot_run(exported, tmp_path):
    with pytest.raises(ConfigError, match="fp32 or int8, not bf16"):
        Predictor.from_pretrained(exported, precision="bf16", backend="onnx")
    with pytest.raises(ConfigError, match="runs on the CPU, not cuda"):
        Predictor.from_pretrained(exported, device="cuda", backend="onnx")
    with pytest.raises(ConfigError, match="unknown backend 'tensorrt'"):
        Predictor.from_pretrained(exported, backend="tensorrt")
    damaged = tmp_path / "damaged"
    (damaged / ONNX_DIR).mkdir(parents=True)
    for name in ("config.json", "preprocessor_config.json"):
        (damaged / name).write_bytes((exported / name).read_bytes())
    (damaged / ONNX_DIR / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(SerError, match=r"cannot load the ONNX model .*model.onnx") as err:
        Predictor.from_pretrained(damaged, precision="fp32", backend="onnx")
    assert "\n" not in str(err.value)
