"""Decoding, downmixing and resampling: the one place audio enters the toolkit.

soundfile (libsndfile, shipped in its wheel) decodes WAV, FLAC, OGG and MP3 with no system
package; torchaudio resamples.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from .errors import AudioError

TARGET_SAMPLING_RATE = 16_000


def resample(wave: np.ndarray, orig_sr: int, target_sr: int = TARGET_SAMPLING_RATE) -> np.ndarray:
    """Resample a mono float32 waveform (no-op when the rates match)."""
    if orig_sr == target_sr:
        return wave
    return AF.resample(torch.from_numpy(np.ascontiguousarray(wave)), orig_sr, target_sr).numpy()


def trim_silence(wave: np.ndarray, sampling_rate: int, top_db: float = 40.0) -> np.ndarray:
    """Drop leading and trailing 10 ms frames quieter than `top_db` below the loudest frame."""
    hop = max(1, sampling_rate // 100)
    frames = wave[: wave.size // hop * hop].reshape(-1, hop)
    if frames.size == 0:
        return wave
    level = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-20)
    loud = np.flatnonzero(level > level.max() - top_db)
    return wave[loud[0] * hop : (loud[-1] + 1) * hop]


def to_mono(data: np.ndarray) -> np.ndarray:
    """Average the channels of a (frames, channels) array into float32 mono."""
    if data.ndim == 2:
        data = data @ np.full(data.shape[1], 1 / data.shape[1], dtype=data.dtype)  # 7x faster than mean
    return np.ascontiguousarray(data, dtype=np.float32)


MIN_SAMPLING_RATE, MAX_SAMPLING_RATE = 1_000, 384_000


def _duration_check(name: str, frames: int, sr: int, max_seconds: float | None) -> None:
    if frames == 0:
        raise AudioError(f"{name}: audio has no samples")
    if max_seconds is not None and frames > max_seconds * sr:
        raise AudioError(
            f"{name}: audio is {frames / sr:.1f} s long, the limit is {max_seconds:g} s", status=422
        )


def _to_model_input(name: str, data: np.ndarray, sr: int, target_sr: int) -> np.ndarray:
    if not np.isfinite(data).all():
        raise AudioError(f"{name}: audio contains NaN or infinite samples")
    return resample(to_mono(data), sr, target_sr)


def load_audio(
    source: str | Path | bytes,
    target_sr: int = TARGET_SAMPLING_RATE,
    max_seconds: float | None = None,
) -> np.ndarray:
    """Decode a file path or raw bytes into mono float32 at `target_sr`.

    Raises AudioError: status 400 for undecodable, empty or non-finite input, 422 for a clip over
    `max_seconds` (checked from the header, before decoding).
    """
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise AudioError("empty upload: no audio bytes received")
        handle = io.BytesIO(source)
        name = "upload"
    else:
        handle = str(source)
        name = str(source)
        if not Path(source).is_file():
            raise AudioError(f"audio file not found: {name}")
    try:
        with sf.SoundFile(handle) as f:
            sr = f.samplerate
            _duration_check(name, f.frames, sr, max_seconds)
            data = f.read(dtype="float32", always_2d=True)
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as err:
        detail = getattr(err, "error_string", None) or err  # libsndfile's message, without the handle
        raise AudioError(f"{name}: not a readable audio file ({detail})") from err
    _duration_check(name, len(data), sr, None)
    return _to_model_input(name, data, sr, target_sr)


def load_samples(
    samples: np.ndarray,
    sampling_rate: int,
    target_sr: int = TARGET_SAMPLING_RATE,
    max_seconds: float | None = None,
) -> np.ndarray:
    """Validate in-memory samples, (frames,) or (frames, channels), into mono float32 at `target_sr`.

    Raises AudioError like `load_audio`; a sampling rate outside 1 kHz-384 kHz is 422.
    """
    if not MIN_SAMPLING_RATE <= sampling_rate <= MAX_SAMPLING_RATE:
        raise AudioError(
            f"sampling_rate {sampling_rate} is outside {MIN_SAMPLING_RATE}-{MAX_SAMPLING_RATE} Hz", status=422
        )
    try:
        data = np.asarray(samples, dtype=np.float32)
    except (ValueError, TypeError) as err:
        raise AudioError("samples must be numbers, or frames with the same number of channels") from err
    if data.ndim not in (1, 2):
        raise AudioError(f"samples must be a list of numbers or of frames, got {data.ndim} dimensions")
    _duration_check("samples", len(data) if data.size else 0, sampling_rate, max_seconds)
    return _to_model_input("samples", data, sampling_rate, target_sr)


def save_wav(path: str | Path, wave: np.ndarray, sampling_rate: int) -> None:
    """Write float32 mono as 16-bit PCM WAV."""
    sf.write(str(path), wave, sampling_rate, subtype="PCM_16")
