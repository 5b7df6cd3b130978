"""Training-time augmentation of the waveform, drawn per (seed, epoch, clip) so that `--resume`
replays an epoch exactly: speed perturbation (tempo and pitch together, as in Kaldi recipes) and
additive noise at a random signal-to-noise ratio."""

from __future__ import annotations

import numpy as np
import torch
import torchaudio.functional as AF

NOISE_SNR_SPAN_DB = 20.0  # the SNR is drawn from [data.noise_snr_db, data.noise_snr_db + 20]


def speed_perturbed(wave: np.ndarray, factor: float) -> np.ndarray:
    """`wave` played `factor` times as fast (shorter and higher for factor > 1), at the same rate;
    the factor is rounded to 0.01."""
    step = round(factor * 100)
    if step == 100:
        return wave
    return AF.resample(torch.from_numpy(np.ascontiguousarray(wave)), orig_freq=step, new_freq=100).numpy()


def with_noise(wave: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """`wave` plus white noise `snr_db` below its power."""
    power = float(np.mean(wave.astype(np.float64) ** 2))
    noise = rng.standard_normal(wave.size) * np.sqrt(power / 10 ** (snr_db / 10))
    return (wave + noise).astype(np.float32)


class Augmenter:
    """Draws each training clip's speed factor and noise level from its own random stream."""

    def __init__(self, speed: float = 0.0, noise_snr_db: float | None = None, seed: int = 0):
        self.speed, self.noise_snr_db, self.seed = speed, noise_snr_db, seed

    @property
    def active(self) -> bool:
        return self.speed > 0 or self.noise_snr_db is not None

    def speed_up(self, wave: np.ndarray, epoch: int, index: int) -> np.ndarray:
        if self.speed <= 0:
            return wave
        rng = np.random.default_rng([self.seed, epoch, index, 1])
        return speed_perturbed(wave, rng.uniform(1 - self.speed, 1 + self.speed))

    def add_noise(self, wave: np.ndarray, epoch: int, index: int) -> np.ndarray:
        if self.noise_snr_db is None:
            return wave
        rng = np.random.default_rng([self.seed, epoch, index, 2])
        return with_noise(wave, rng.uniform(self.noise_snr_db, self.noise_snr_db + NOISE_SNR_SPAN_DB), rng)
