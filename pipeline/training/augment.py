"""Training-time augmentation, drawn per (seed, epoch, clip) so that `--resume` replays an epoch
exactly. Of the waveform: speed perturbation (tempo and pitch together, as in Kaldi recipes) and
additive noise at a random signal-to-noise ratio. Of log-mel features: vocal tract length
perturbation (a warped mel axis) and a level shift, which imitate other speakers and channels."""

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


VTLP_BOUNDARY = 0.8  # share of the mel axis stretched by the factor; above it, a line to the top bin


def mel_warped(features: torch.Tensor, factor: float, bins: int) -> torch.Tensor:
    """VTLP (Jaitly & Hinton, 2013) on filter banks: output bin k reads the input at k * factor up
    to the boundary, then along a line that keeps the top bin in place, interpolating linearly
    between neighbouring bins. `features` is (steps, stacked frames * bins)."""
    top = bins - 1
    boundary = VTLP_BOUNDARY * bins * min(1.0, 1.0 / factor)
    k = torch.arange(bins, dtype=torch.float32)
    above = boundary * factor + (top - boundary * factor) * (k - boundary) / (top - boundary)
    source = torch.where(k <= boundary, k * factor, above).clamp(0, top)
    low = source.floor().long()
    high, weight = (low + 1).clamp(max=top), source - low
    frames = features.reshape(features.shape[0], -1, bins)
    return (frames[..., low] * (1 - weight) + frames[..., high] * weight).reshape(features.shape)


class Augmenter:
    """Draws each training clip's speed factor, noise level, mel warp and level shift from its own
    random stream."""

    def __init__(
        self,
        speed: float = 0.0,
        noise_snr_db: float | None = None,
        seed: int = 0,
        mel_warp: float = 0.0,
        level_shift: float = 0.0,
    ):
        self.speed, self.noise_snr_db, self.seed = speed, noise_snr_db, seed
        self.mel_warp, self.level_shift = mel_warp, level_shift

    @property
    def active(self) -> bool:
        return self.speed > 0 or self.noise_snr_db is not None or self.mel_warp > 0 or self.level_shift > 0

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

    def perturb_features(self, features: torch.Tensor, bins: int, epoch: int, index: int) -> torch.Tensor:
        """One clip's normalised log-mel features (steps, stacked frames * bins), warped and shifted."""
        rng = np.random.default_rng([self.seed, epoch, index, 3])
        if self.mel_warp > 0:
            features = mel_warped(features, rng.uniform(1 - self.mel_warp, 1 + self.mel_warp), bins)
        if self.level_shift > 0:
            features = features + rng.uniform(-self.level_shift, self.level_shift)
        return features
