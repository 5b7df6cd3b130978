"""The model's inputs from waveforms in numpy alone, read from a checkpoint's `preprocessor_config.json`:
the same keys, dtypes, shapes and (to float rounding) values as `pipeline.features.input_features`,
for a server installed without torch. Two extractors: `Wav2Vec2FeatureExtractor` (the waveform,
normalised per clip) and `SeamlessM4TFeatureExtractor` (Kaldi log-mel filter banks, as torchaudio
computes them); equality with the torch path is tested in tests/test_frontend.py."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .errors import ConfigError

# The SeamlessM4T extractor's fixed recipe (Kaldi-compatible): 25-ms povey windows every 10 ms on
# 16-bit-scaled samples, DC removed, pre-emphasis 0.97, mel bins from 20 Hz to Nyquist, log floor eps.
# `pipeline.features` passes them to torchaudio; `log_mel` below computes them in numpy.
KALDI_OPTIONS = dict(
    dither=0.0,
    window_type="povey",
    frame_length=25.0,
    frame_shift=10.0,
    preemphasis_coefficient=0.97,
    remove_dc_offset=True,
    round_to_power_of_two=True,
    low_freq=20.0,
    high_freq=0.0,
    use_energy=False,
    use_log_fbank=True,
    use_power=True,
    snip_edges=True,
)
NORM_EPSILON = 1e-7  # per-bin (log-mel) and per-clip (waveform) normalisation, as the stock extractors
FLOAT32_EPS = float(np.finfo(np.float32).eps)  # Kaldi's floor before the log
# samples per window and per shift (400, 160), as torchaudio derives them, and the FFT size (512)
WINDOW, SHIFT = (int(16_000 * KALDI_OPTIONS[key] * 0.001) for key in ("frame_length", "frame_shift"))
FFT_SIZE = 1 << (WINDOW - 1).bit_length()
BLOCK_FRAMES = 512  # frames per FFT block of `log_mel`: they stay in the cache

WAVEFORM, LOG_MEL = "Wav2Vec2FeatureExtractor", "SeamlessM4TFeatureExtractor"


def _unsupported(kind: str, why: str = "") -> ConfigError:
    return ConfigError(f"{kind}{why} is not computed without torch: use --backend torch")


@dataclass(frozen=True)
class FrontEnd:
    """A checkpoint's feature extractor, as numpy: `front_end(waves)` gives the model's padded batch."""

    kind: str  # the extractor's class name: WAVEFORM or LOG_MEL
    sampling_rate: int = 16_000
    return_attention_mask: bool = True  # the extractor's own attribute (the log-mel batch has a mask always)
    do_normalize: bool = True  # waveform: zero mean, unit variance per clip
    padding_value: float = 0.0  # waveform
    num_mel_bins: int = 80  # log-mel

    @classmethod
    def from_pretrained(cls, path: str | Path) -> FrontEnd:
        """The front end of a checkpoint directory (its preprocessor_config.json)."""
        file = Path(path) / "preprocessor_config.json"
        try:
            config = json.loads(file.read_text())
        except (OSError, ValueError) as err:
            raise ConfigError(f"cannot read the feature extractor's config {file}: {err}") from err
        return cls.from_dict(config)

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> FrontEnd:
        """The front end of a feature extractor's config, with the stock extractors' defaults."""
        kind = config.get("feature_extractor_type", "a feature extractor with no feature_extractor_type")
        if config.get("padding_side", "right") != "right":
            raise _unsupported(kind, " padding on the left")
        if kind == WAVEFORM and config.get("feature_size", 1) == 1:
            return cls(
                kind,
                sampling_rate=config.get("sampling_rate", 16_000),
                return_attention_mask=config.get("return_attention_mask", False),
                do_normalize=config.get("do_normalize", True),
                padding_value=config.get("padding_value", 0.0),
            )
        if kind == LOG_MEL:
            bins = config.get("num_mel_bins", 80)
            # the conditions of `features._torch_equivalent`, the recipe `log_mel` reproduces
            if (
                config.get("sampling_rate", 16_000) != 16_000
                or config.get("feature_size", 80) != bins
                or config.get("padding_value", 0.0) != 0.0
                or config.get("stride", 2) != 2
            ):
                raise _unsupported(
                    kind, " other than 16 kHz, feature_size == num_mel_bins, padding_value 0, stride 2"
                )
            return cls(
                kind, return_attention_mask=config.get("return_attention_mask", True), num_mel_bins=bins
            )
        raise _unsupported(kind, " with feature_size > 1" if kind == WAVEFORM else "")

    @property
    def model_input_names(self) -> list[str]:
        """The batch's keys: the input (waveform or features), then the attention mask if it has one."""
        if self.kind == LOG_MEL:
            return ["input_features", "attention_mask"]
        return ["input_values", "attention_mask"] if self.return_attention_mask else ["input_values"]

    def __call__(self, waves: list[np.ndarray]) -> dict[str, np.ndarray]:
        """The model's padded batch inputs from 1-D waveforms at `sampling_rate`."""
        if self.kind == LOG_MEL:
            return _log_mel_inputs([log_mel(wave, self.num_mel_bins) for wave in waves], self.num_mel_bins)
        return self._waveform_inputs([np.asarray(wave, np.float32) for wave in waves])

    def _waveform_inputs(self, waves: list[np.ndarray]) -> dict[str, np.ndarray]:
        """`Wav2Vec2FeatureExtractor(waves, padding=True)`: padded to the longest; normalised over each
        clip's real samples where it returns a mask, else (as it does) over the padded row."""
        values = np.full((len(waves), max(map(len, waves))), self.padding_value, np.float32)
        mask = np.zeros(values.shape, np.int32)
        for row, wave in enumerate(waves):
            values[row, : len(wave)] = wave
            mask[row, : len(wave)] = 1
            if self.do_normalize:
                real = values[row, : len(wave)] if self.return_attention_mask else values[row]
                real[:] = _normalise(real)
        batch = {"input_values": values, "attention_mask": mask}
        return {name: batch[name] for name in self.model_input_names}


def _normalise(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance, computed as the stock extractor does (in float32)."""
    return (x - x.mean()) / np.sqrt(x.var() + NORM_EPSILON)


@cache
def _povey_window() -> np.ndarray:
    """Kaldi's povey window: a symmetric Hann window to the power 0.85 (float32, as torch)."""
    hann = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WINDOW) / (WINDOW - 1))).astype(np.float32)
    return hann ** np.float32(0.85)


@cache
def _mel_banks(num_bins: int) -> np.ndarray:
    """(FFT bins, mel bins) triangles in mel space, as `torchaudio.compliance.kaldi.get_mel_banks`
    computes them (in float32), with the zero row of the Nyquist bin: the right side of one matmul."""
    low, high = KALDI_OPTIONS["low_freq"], KALDI_OPTIONS["high_freq"]
    high = high if high > 0 else high + 16_000 / 2
    mel_low = 1127.0 * math.log(1.0 + low / 700.0)
    delta = (1127.0 * math.log(1.0 + high / 700.0) - mel_low) / (num_bins + 1)
    index = np.arange(num_bins, dtype=np.float32)[:, None]
    left, center, right = (mel_low + (index + step) * delta for step in (0.0, 1.0, 2.0))
    freqs = np.float32(16_000 / FFT_SIZE) * np.arange(FFT_SIZE // 2, dtype=np.float32)
    mel = 1127.0 * np.log(1.0 + freqs / 700.0)
    banks = np.maximum(0.0, np.minimum((mel - left) / (center - left), (right - mel) / (right - center)))
    return np.ascontiguousarray(np.pad(banks, ((0, 0), (0, 1))).T)


def log_mel(wave: np.ndarray, num_mel_bins: int = 80) -> np.ndarray:
    """(frames, mel bins) Kaldi log-mel filter banks of one 16-kHz clip (torchaudio's `fbank` with
    KALDI_OPTIONS on 16-bit-scaled samples), normalised per bin over the clip (float32). Frames go
    through the FFT in blocks (1.6x faster on a minute than all at once)."""
    emphasis = np.float32(KALDI_OPTIONS["preemphasis_coefficient"])
    samples = np.asarray(wave, np.float32) * np.float32(2**15)
    frames = sliding_window_view(samples, WINDOW)[::SHIFT]  # snip_edges: whole windows only
    power = np.empty((len(frames), FFT_SIZE // 2 + 1), np.float32)
    # float64: numpy's FFT is as fast in it (and exacter); a block's rows, zero-padded to the FFT size
    padded = np.zeros((min(BLOCK_FRAMES, len(frames)), FFT_SIZE))
    for start in range(0, len(frames), BLOCK_FRAMES):
        block = frames[start : start + BLOCK_FRAMES]
        block = block - block.mean(1, keepdims=True)
        block[:, 1:] -= emphasis * block[:, :-1]  # the product is computed before it is subtracted
        block[:, 0] -= emphasis * block[:, 0]  # the first sample's predecessor is itself (replicate)
        rows = padded[: len(block)]
        np.multiply(block, _povey_window(), out=rows[:, :WINDOW])
        spectrum = np.fft.rfft(rows)
        np.add(spectrum.real**2, spectrum.imag**2, out=power[start : start + len(block)], casting="same_kind")
    bank = np.log(np.maximum(power @ _mel_banks(num_mel_bins), np.float32(FLOAT32_EPS)))
    # the statistics accumulated in float64 (as torch's var is), applied in float32
    mean = bank.mean(0, np.float64).astype(np.float32)
    var = bank.var(0, np.float64, ddof=1).astype(np.float32)  # ddof 1: torch's `var` default
    return (bank - mean) / np.sqrt(var + np.float32(NORM_EPSILON))


def _log_mel_inputs(banks: list[np.ndarray], num_mel_bins: int) -> dict[str, np.ndarray]:
    """`pipeline.features._log_mel_inputs`: banks zero-padded to the longest, rounded up to an even
    number of frames; pairs of frames stacked per step; a step is real where its second frame is."""
    steps = -(-max(len(bank) for bank in banks) // 2)
    features = np.zeros((len(banks), steps * 2, num_mel_bins), np.float32)
    mask = np.zeros((len(banks), steps), np.int32)
    for row, bank in enumerate(banks):
        features[row, : len(bank)] = bank
        mask[row, : len(bank) // 2] = 1
    return {"input_features": features.reshape(len(banks), steps, -1), "attention_mask": mask}
