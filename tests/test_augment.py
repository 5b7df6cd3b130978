"""Training-time augmentation: speed perturbation, noise, mel warp and level shift, replayable per
(seed, epoch, clip)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.config import ModelConfig, load_config
from pipeline.model import build_feature_extractor
from pipeline.training.augment import Augmenter, mel_warped, speed_perturbed, with_noise
from pipeline.training.batching import Collator

pytestmark = pytest.mark.fast  # pure logic: `make test-fast`

SR = 16_000


def _sine(freq: float, seconds: float = 2.0) -> np.ndarray:
    return np.sin(2 * np.pi * freq * np.arange(int(seconds * SR)) / SR).astype(np.float32)


def _peak_hz(wave: np.ndarray) -> float:
    return float(np.argmax(np.abs(np.fft.rfft(wave))) * SR / wave.size)


def test_speed_perturbation_shortens_and_raises_the_pitch():
    faster = speed_perturbed(_sine(200.0), 1.1)
    assert faster.size == pytest.approx(2 * SR / 1.1, abs=2)
    assert _peak_hz(faster) == pytest.approx(220.0, abs=2)
    assert speed_perturbed(_sine(200.0), 1.001).size == 2 * SR  # rounded to 0.01: unchanged


def test_noise_is_added_at_the_requested_snr():
    clean = _sine(300.0, 5.0)
    noisy = with_noise(clean, 10.0, np.random.default_rng(0))
    snr = 10 * np.log10(
        np.mean(clean.astype(np.float64) ** 2) / np.mean((noisy - clean).astype(np.float64) ** 2)
    )
    assert snr == pytest.approx(10.0, abs=0.3)


def test_each_clip_draws_the_same_augmentation_in_the_same_epoch_only():
    aug = Augmenter(speed=0.1, noise_snr_db=5.0, seed=3)
    wave = _sine(250.0)
    once, again = aug.speed_up(wave, 2, 7), aug.speed_up(wave, 2, 7)
    assert np.array_equal(once, again)  # replayable: what --resume relies on
    assert {aug.speed_up(wave, epoch, 7).size for epoch in range(8)} != {once.size}  # varies by epoch
    assert np.array_equal(aug.add_noise(wave, 2, 7), aug.add_noise(wave, 2, 7))
    assert not np.array_equal(aug.add_noise(wave, 2, 7), aug.add_noise(wave, 2, 8))


def test_only_training_batches_are_augmented_and_only_when_asked():
    extractor = build_feature_extractor(ModelConfig(architecture="wav2vec2"))  # the waveform itself
    rows = [{"input_values": _sine(200.0, 1.0), "label": "a", "index": 0}]
    aug = Augmenter(speed=0.0, noise_snr_db=0.0, seed=0)
    plain = Collator(extractor, ["a"], 3.0, train=True)(rows)["input_values"]
    noisy = Collator(extractor, ["a"], 3.0, train=True, augmenter=aug)(rows)["input_values"]
    evaluated = Collator(extractor, ["a"], 3.0, train=False, augmenter=aug)(rows)["input_values"]
    assert not np.allclose(plain, noisy) and np.array_equal(plain, evaluated)
    assert not Augmenter().active and load_config().data.noise_snr_db is None  # off by default


def test_mel_warp_moves_spectral_peaks_by_the_factor_and_keeps_the_edges():
    """A peak at bin 30 of both stacked frames moves to about 30 / factor (output bin k reads input
    bin k * factor); the lowest and highest bins stay in place; factor 1 is the identity."""
    bins = 80
    features = torch.zeros(5, 2 * bins)
    features.view(5, 2, bins)[:, :, 30] = 1.0
    for factor in (0.9, 1.1):
        warped = mel_warped(features, factor, bins).view(5, 2, bins)
        assert (warped.argmax(-1) == round(30 / factor)).all()
    ramp = torch.arange(bins, dtype=torch.float32).repeat(3, 2)
    widest = load_config().data.mel_warp
    for factor in (1 - widest, 1 + widest):  # the default range's ends
        warped = mel_warped(ramp, factor, bins).view(3, 2, bins)
        assert warped[..., 0].eq(0).all() and warped[..., -1].eq(bins - 1).all()
        assert (warped.diff(dim=-1) >= 0).all()  # monotonic: no bins swapped
    torch.testing.assert_close(mel_warped(ramp, 1.0, bins), ramp)


def test_log_mel_training_batches_get_warp_and_shift_on_real_steps_only():
    """Training batches of a log-mel model are perturbed per clip (replayably, differently per epoch),
    padding stays zero, evaluation batches are the extractor's own; both are on by default."""
    extractor = build_feature_extractor(ModelConfig(architecture="wav2vec2-bert"))
    rows = [
        {"input_values": _sine(200.0, 1.0), "label": "a", "index": 0},
        {"input_values": _sine(300.0, 0.5), "label": "a", "index": 1},
    ]
    defaults = load_config().data
    aug = Augmenter(seed=0, mel_warp=defaults.mel_warp, level_shift=defaults.level_shift)
    assert aug.active and defaults.mel_warp > 0 and defaults.level_shift > 0
    train = Collator(extractor, ["a"], 3.0, train=True, augmenter=aug)
    plain = Collator(extractor, ["a"], 3.0, train=False, augmenter=aug)(rows)
    first = train(rows)
    assert torch.equal(first["attention_mask"], plain["attention_mask"])
    steps = int(plain["attention_mask"][1].sum())
    assert not torch.allclose(first["input_features"], plain["input_features"])
    assert first["input_features"][1, steps:].eq(0).all()  # the short clip's padding is untouched
    assert torch.equal(train(rows)["input_features"], first["input_features"])  # replayable
    train.set_epoch(1)
    assert not torch.allclose(train(rows)["input_features"], first["input_features"])
