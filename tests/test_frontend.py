"""The numpy front end and resampler (for a server without torch) equal the torch code they stand in for:
`pipeline.features.input_features`, the stock extractors, `torchaudio.functional.resample`."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torchaudio.functional as AF
from transformers import Wav2Vec2FeatureExtractor

from pipeline.config import ModelConfig
from pipeline.data.audio import resampling_ratio
from pipeline.data.resampling import resample_ratio
from pipeline.errors import ConfigError
from pipeline.features import input_features
from pipeline.frontend import FrontEnd
from pipeline.model import build_feature_extractor

pytestmark = pytest.mark.fast

LENGTHS = pytest.mark.parametrize(
    "lengths",
    [[48_000], [48_000, 30_001, 1_600], [16_160, 16_321], [160_000, 2_000], [1_600]],
    ids=["one", "three-padded", "odd-frames", "long-and-short", "a-tenth-of-a-second"],
)


def _waves(lengths: list[int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(n) * 0.1 * (1 + i)).astype(np.float32) for i, n in enumerate(lengths)]


def _front_end(extractor, tmp_path) -> FrontEnd:
    extractor.save_pretrained(tmp_path)
    return FrontEnd.from_pretrained(tmp_path)


def _same_batch(ours: dict[str, np.ndarray], theirs, atol: float) -> float:
    """Asserts the same keys, shapes, dtypes and masks, values within `atol`; the largest difference."""
    theirs = {
        key: value.numpy() if isinstance(value, torch.Tensor) else value for key, value in theirs.items()
    }
    assert list(ours) == list(theirs)
    for key, value in theirs.items():
        assert ours[key].shape == value.shape and ours[key].dtype == value.dtype, key
    if "attention_mask" in theirs:
        np.testing.assert_array_equal(ours["attention_mask"], theirs["attention_mask"])
    name = list(theirs)[0]
    np.testing.assert_allclose(ours[name], theirs[name], rtol=0, atol=atol)
    return float(np.abs(ours[name] - theirs[name]).max())


@LENGTHS
@pytest.mark.parametrize("seed", range(3))
def test_log_mel_equals_the_torch_features(lengths, seed, tmp_path):
    """Wav2Vec2-BERT's front end: the same batch as `input_features`. Values agree to float32 FFT
    rounding: torch's (MKL's) own float32 filter banks are up to 6e-4 from a float64 computation in
    the bins that pre-emphasis leaves weakest, and numpy's FFT rounds differently: the largest
    difference is 2e-5 to 3.4e-4 on these clips of noise (9e-4 on a minute), the mean one 3e-6."""
    extractor = build_feature_extractor(ModelConfig(architecture="wav2vec2-bert"))
    front_end = _front_end(extractor, tmp_path)
    assert front_end.model_input_names == extractor.model_input_names
    waves = _waves(lengths, seed)
    ours, theirs = front_end(waves), input_features(extractor)(waves)
    _same_batch(ours, theirs, atol=1.5e-3)
    assert np.abs(ours["input_features"] - theirs["input_features"].numpy()).mean() < 1e-5


@LENGTHS
def test_waveform_equals_the_torch_features(lengths, tmp_path):
    """The small wav2vec2's front end (normalised per clip over its real samples, with a mask)."""
    extractor = build_feature_extractor(ModelConfig(architecture="wav2vec2"))
    front_end = _front_end(extractor, tmp_path)
    assert front_end.model_input_names == ["input_values", "attention_mask"]
    waves = _waves(lengths)
    assert _same_batch(front_end(waves), input_features(extractor)(waves), atol=1e-6) <= 1e-6


@LENGTHS
@pytest.mark.parametrize("do_normalize", [True, False])
def test_waveform_equals_the_stock_extractor_without_a_mask(lengths, do_normalize, tmp_path):
    """A wav2vec2-base-like extractor (no mask): normalised, as it is, over the padded row."""
    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16_000, padding_value=0.0, do_normalize=do_normalize
    )
    front_end = _front_end(extractor, tmp_path)
    assert front_end.model_input_names == ["input_values"] and not front_end.return_attention_mask
    waves = _waves(lengths)
    stock = extractor(waves, sampling_rate=16_000, padding=True, return_tensors="np")
    _same_batch(front_end(waves), stock, atol=1e-6)
    _same_batch(front_end(waves), input_features(extractor)(waves), atol=1e-6)


@pytest.mark.parametrize(
    "config",
    [
        {"feature_extractor_type": "WhisperFeatureExtractor", "feature_size": 80},
        {"feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 2},
        {"feature_extractor_type": "SeamlessM4TFeatureExtractor", "sampling_rate": 8_000},
        {"feature_extractor_type": "SeamlessM4TFeatureExtractor", "stride": 3},
        {"feature_extractor_type": "SeamlessM4TFeatureExtractor", "num_mel_bins": 40},
        {"feature_size": 1},
    ],
    ids=["whisper", "wide-wav2vec2", "8-khz-log-mel", "stride-3", "40-bins-of-80", "no-type"],
)
def test_other_extractors_are_refused(config, tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="not computed without torch: use --backend torch") as err:
        FrontEnd.from_pretrained(tmp_path)
    assert len(str(err.value).splitlines()) == 1
    assert config.get("feature_extractor_type", "no feature_extractor_type") in str(err.value)


def test_a_missing_config_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="preprocessor_config.json"):
        FrontEnd.from_pretrained(tmp_path)


ODD_RATIO = resampling_ratio(44_101, 16_000)


@pytest.mark.parametrize(
    "orig, new",
    [(3, 1), (441, 160), (1, 2), (441, 320), ODD_RATIO],
    ids=["48k-16k", "44.1k-16k", "8k-16k", "22.05k-16k", "44.101k-16k"],
)
@pytest.mark.parametrize("seconds", [None, 10.0])
def test_resampling_equals_torchaudio(orig, new, seconds):
    """Sample for sample (to 1e-6; measured 3e-7), with the same length: a clip of 1, a few and
    10 s of samples (at the ratio's own rate)."""
    rng = np.random.default_rng(orig)
    lengths = [1, 2, 5, orig + 1, 1_001] if seconds is None else [round(seconds * 16_000 * orig / new)]
    for length in lengths:
        wave = (rng.standard_normal(length) * 0.3).astype(np.float32)
        ours = resample_ratio(wave, orig, new)
        theirs = AF.resample(torch.from_numpy(wave), orig, new).numpy()
        assert ours.shape == theirs.shape and ours.dtype == np.float32 and ours.flags.c_contiguous
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)


def test_resampling_rounds_the_length_as_torchaudio():
    """torchaudio takes the output length through float32: 160 * 441_328 / 441 = 160_119.002 gives
    160_119 samples, not 160_120."""
    wave = np.random.default_rng(0).standard_normal(441_328).astype(np.float32)
    assert len(resample_ratio(wave, 441, 160)) == 160_119 < math.ceil(160 * 441_328 / 441)
    assert len(AF.resample(torch.from_numpy(wave), 441, 160)) == 160_119


def test_the_numpy_modules_import_no_torch():
    code = (
        "import sys, pipeline.frontend, pipeline.data.resampling\n"
        "print(sorted({'torch', 'torchaudio', 'transformers', 'scipy'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
