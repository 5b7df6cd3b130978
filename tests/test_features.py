"""The torch log-mel front end equals the stock SeamlessM4T feature extractor it replaces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.config import ModelConfig
from pipeline.features import input_features
from pipeline.model import build_feature_extractor

pytestmark = pytest.mark.fast


@pytest.mark.parametrize(
    "lengths",
    [[48_000], [48_000, 30_001, 1_600], [16_160, 16_321], [160_000, 2_000]],
    ids=["one", "three-padded", "odd-frames", "long-and-short"],
)
def test_torch_log_mel_equals_the_stock_extractor(lengths):
    """Same shapes, the same attention mask (a clip's last half-filled step masked) and values equal
    to 3e-4 (Kaldi's float32 filter banks against numpy's float64 ones, then normalised)."""
    extractor = build_feature_extractor(ModelConfig(architecture="wav2vec2-bert"))
    rng = np.random.default_rng(len(lengths))
    waves = [(rng.standard_normal(n) * 0.1 * (1 + i)).astype(np.float32) for i, n in enumerate(lengths)]
    stock = extractor(waves, sampling_rate=16_000, padding=True, return_tensors="pt")
    ours = input_features(extractor)(waves)
    assert ours.keys() == stock.keys()
    assert ours["attention_mask"].dtype == stock["attention_mask"].dtype
    torch.testing.assert_close(ours["attention_mask"], stock["attention_mask"], rtol=0, atol=0)
    torch.testing.assert_close(ours["input_features"], stock["input_features"], rtol=0, atol=3e-4)


def test_other_extractors_keep_their_own_code():
    """A waveform model's extractor (and any extractor the torch recipe does not reproduce) is
    called as it is."""
    waveform = build_feature_extractor(ModelConfig(architecture="wav2vec2"))
    wave = np.random.default_rng(0).standard_normal(8_000).astype(np.float32)
    stock = waveform([wave], sampling_rate=16_000, padding=True, return_tensors="pt")
    torch.testing.assert_close(input_features(waveform)([wave])["input_values"], stock["input_values"])
    changed = build_feature_extractor(ModelConfig(architecture="wav2vec2-bert"))
    changed.padding_value = 1.0  # pads with ones: not the torch recipe's zeros
    padded = input_features(changed)([wave, wave[:4000]])["input_features"]
    assert (padded[1, -1] == 1.0).all()
