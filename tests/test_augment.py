"""Training-time augmentation: speed perturbation and noise, replayable per (seed, epoch, clip)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import ModelConfig, load_config
from pipeline.model import build_feature_extractor
from pipeline.training.augment import Augmenter, speed_perturbed, with_noise
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
