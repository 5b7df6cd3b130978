"""Model building (small local config and a pretrained local directory) and the inference path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

from pipeline.config import ModelConfig
from pipeline.errors import ConfigError
from pipeline.inference import torch_model
from pipeline.inference.predictor import Predictor
from pipeline.inference.torch_model import AUTO_BF16_MIN_PARAMETERS, bf16_pays, resolve_precision
from pipeline.model import build_feature_extractor, build_model, takes_waveform
from pipeline.small_models import SMALL_MODELS

LABELS = ["angry", "happy", "neutral", "sad"]


@pytest.mark.fast
def test_pretrained_backbone_from_a_local_directory(tmp_path):
    """`--backbone DIR` loads the saved encoder weights and adds a fresh head."""
    torch.manual_seed(1)
    small = SMALL_MODELS["wav2vec2"] | {"feat_extract_norm": "group"}
    encoder = Wav2Vec2Model(Wav2Vec2Config(**small))
    encoder.save_pretrained(tmp_path, safe_serialization=True)
    Wav2Vec2FeatureExtractor(return_attention_mask=False).save_pretrained(tmp_path)
    model = build_model(ModelConfig(backbone=str(tmp_path)), LABELS)
    assert model.config.id2label == dict(enumerate(LABELS))
    saved = encoder.state_dict()
    loaded = model.wav2vec2.state_dict()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    assert build_feature_extractor(ModelConfig(backbone=str(tmp_path))).return_attention_mask is False


@pytest.mark.fast
def test_missing_backbone_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot load"):
        build_model(ModelConfig(backbone=str(tmp_path / "nothing")), LABELS)


@pytest.mark.fast
def test_a_misspelt_small_model_key_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown model.small key 'hiden_size': not a Wav2Vec2BertConfig"):
        build_model(ModelConfig(small={"hiden_size": 32}), LABELS)


@pytest.mark.fast
@pytest.mark.parametrize("norm, mask", [("layer", True), ("group", False)])
def test_batched_equals_single(norm, mask):
    """A clip's scores are the same alone and inside a mixed-length batch: masked padding for
    layer-norm encoders, passes of equal-length clips for group-norm ones."""
    torch.manual_seed(0)
    cfg = ModelConfig(architecture="wav2vec2", small={"feat_extract_norm": norm})
    model = build_model(cfg, LABELS)
    extractor = Wav2Vec2FeatureExtractor(return_attention_mask=mask)
    predictor = Predictor.from_model(model, extractor)
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (4000, 16000, 9000, 16000, 4000)]
    batched = predictor.logits(waves)
    single = np.concatenate([predictor.logits([w]) for w in waves])
    np.testing.assert_allclose(batched, single, atol=1e-4)
    if not mask:  # the hazard this avoids: zero padding does change a group-norm encoder's answer
        padded = extractor(waves[:2], sampling_rate=16_000, padding=True, return_tensors="pt")
        assert not np.allclose(model(**padded).logits[0].detach().numpy(), single[0], atol=1e-4)
    predictions = predictor.predict(waves)
    assert all(p.label in LABELS and abs(sum(p.scores.values()) - 1) < 1e-5 for p in predictions)


@pytest.mark.fast
@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_reduced_precision_keeps_the_answers_close(tmp_path, precision):
    """int8 replaces every linear layer; bf16 runs under autocast; both stay within a few
    hundredths of fp32."""
    from helpers import make_tiny_checkpoint

    checkpoint = make_tiny_checkpoint(tmp_path / "ckpt")
    fp32 = Predictor.from_pretrained(checkpoint, precision="fp32")
    reduced = Predictor.from_pretrained(checkpoint, precision=precision)
    assert (fp32.precision, reduced.precision) == ("fp32", precision)
    quantized = type(reduced.classifier.model.classifier).__module__.startswith("torch.ao.nn.quantized")
    assert quantized == (precision == "int8")
    linear = any(type(m) is torch.nn.Linear for m in reduced.classifier.model.modules())
    assert linear == (precision != "int8")
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (8000, 16000)]
    difference = np.abs(reduced.probabilities(waves) - fp32.probabilities(waves)).max()
    assert 0 < difference < 0.02


@pytest.mark.fast
def test_auto_precision_is_bf16_only_for_large_models_on_native_hardware(monkeypatch):
    cpu, large, small = torch.device("cpu"), AUTO_BF16_MIN_PARAMETERS, AUTO_BF16_MIN_PARAMETERS - 1
    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda native=native: native)
        assert resolve_precision("auto", cpu, large) == expected
        assert resolve_precision("auto", cpu, small) == "fp32"
        assert resolve_precision("bf16", cpu, small) == "bf16"
    assert resolve_precision("int8", cpu, small) == "int8"
    with pytest.raises(ConfigError, match="unknown precision 'int4'"):
        resolve_precision("int4", cpu, small)
    with pytest.raises(ConfigError, match="CPU only"):
        resolve_precision("int8", torch.device("cuda"), large)


@pytest.mark.fast
def test_auto_keeps_bf16_on_a_cpu_only_where_a_probe_shows_it_faster(monkeypatch):
    """CPUs that report native bf16 can still run it slower than fp32 (no AMX): "auto" times both."""
    model, extractor = build_model(ModelConfig(), LABELS), build_feature_extractor(ModelConfig())
    monkeypatch.setattr(torch_model, "AUTO_BF16_MIN_PARAMETERS", 0)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    for pays, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(torch_model, "bf16_pays", lambda model, inputs, pays=pays: pays)
        assert Predictor.from_model(model, extractor, "auto").precision == expected
        assert Predictor.from_model(model, extractor, "bf16").precision == "bf16"  # asked for: not timed


@pytest.mark.fast
def test_the_bf16_probe_times_both_precisions():
    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.autocast = []

        def forward(self, x):
            self.autocast.append(torch.is_autocast_enabled("cpu"))
            return x

    model = Recorder()
    assert bf16_pays(model, {"x": torch.zeros(1)}) in (True, False)
    assert sorted(model.autocast) == [False] * 4 + [True] * 4


@pytest.mark.fast
def test_the_log_mel_architecture_reads_features_and_pads_safely():
    """`model.architecture=wav2vec2-bert`: a conformer on 80 log-mel filter banks, built from a local
    config like the small wav2vec2; its masked padding leaves each clip's answer unchanged."""
    torch.manual_seed(0)
    cfg = ModelConfig(architecture="wav2vec2-bert")
    model, extractor = build_model(cfg, LABELS), build_feature_extractor(cfg)
    assert type(model).__name__ == "Wav2Vec2BertForSequenceClassification" and not takes_waveform(extractor)
    assert takes_waveform(build_feature_extractor(ModelConfig(architecture="wav2vec2")))
    assert ModelConfig().architecture == "wav2vec2-bert"  # the from-scratch default
    predictor = Predictor.from_model(model, extractor)
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (4000, 16000, 9000, 16000, 4000)]
    single = np.concatenate([predictor.logits([w]) for w in waves])
    np.testing.assert_allclose(predictor.logits(waves), single, atol=1e-4)
    assert (
        build_model(
            ModelConfig(architecture="wav2vec2-bert", small={"num_hidden_layers": 1}), LABELS
        ).config.num_hidden_layers
        == 1
    )
