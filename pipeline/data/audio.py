"""Decoding, downmixing and resampling: the one place audio enters the toolkit.

soundfile (libsndfile, shipped in its wheel) decodes WAV, FLAC, OGG and MP3 with no system
package; `resampling.resample_ratio` resamples (torchaudio's filter, in numpy).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import sys
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf

from ..config import TARGET_SAMPLING_RATE
from ..errors import AudioError, LimitError, seconds_past
from .resampling import resample_ratio

MAX_RESAMPLING_KERNEL = 2**21  # elements (8 MB) of the sinc kernel
Resampler = Callable[[np.ndarray, int, int], np.ndarray]  # (wave, orig, new) by a reduced ratio


def resampling_kernel_size(orig: int, new: int, lowpass_filter_width: int = 6, rolloff: float = 0.99) -> int:
    """The size of the kernel torchaudio builds to resample by orig/new (a reduced fraction)."""
    width = math.ceil(lowpass_filter_width * orig / (min(orig, new) * rolloff))
    return new * (orig + 2 * width)


def resampling_ratio(orig_sr: int, target_sr: int) -> tuple[int, int]:
    """(orig, new) to resample by: the exact ratio where its kernel is small (every common rate:
    44.1 kHz to 16 kHz is 441/160), else the nearest ratio whose kernel is. An odd rate such as
    44101 Hz reduces to 44101/16000, whose kernel would take gigabytes; its nearest small ratio is
    off by less than 0.01 %."""
    ratio = Fraction(orig_sr, target_sr)
    limit = ratio.denominator
    while limit > 1:
        near = ratio.limit_denominator(limit)
        if (
            near.numerator
            and resampling_kernel_size(near.numerator, near.denominator) <= MAX_RESAMPLING_KERNEL
        ):
            return near.numerator, near.denominator
        limit //= 2
    return max(1, round(ratio)), 1


def resample(
    wave: np.ndarray,
    orig_sr: int,
    target_sr: int = TARGET_SAMPLING_RATE,
    resampler: Resampler = resample_ratio,
) -> np.ndarray:
    """Resample a mono float32 waveform (no-op when the rates match); memory stays bounded for
    any pair of rates (see `resampling_ratio`)."""
    if orig_sr == target_sr:
        return wave
    orig, new = resampling_ratio(orig_sr, target_sr)
    return resampler(np.ascontiguousarray(wave), orig, new)


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
        weights = np.full(data.shape[1], 1 / data.shape[1], dtype=np.result_type(data.dtype, np.float32))
        data = data @ weights  # 7x faster than mean
    return np.ascontiguousarray(data, dtype=np.float32)


MIN_SAMPLING_RATE, MAX_SAMPLING_RATE = 1_000, 384_000
MAX_CHANNELS = 64


def check_format(name: str, sr: int, channels: int) -> None:
    """Raise LimitError for a sampling rate outside 1 kHz-384 kHz or more than 64 channels."""
    if not MIN_SAMPLING_RATE <= sr <= MAX_SAMPLING_RATE:
        raise LimitError(
            f"{name}: sampling rate {sr} Hz is outside {MIN_SAMPLING_RATE}-{MAX_SAMPLING_RATE} Hz"
        )
    if channels > MAX_CHANNELS:
        raise LimitError(
            f"{name}: {channels} channels, the limit is {MAX_CHANNELS} (frames of channels are expected: "
            "[[left, right], [left, right], ...])"
        )


def _duration_check(name: str, frames: int, sr: int, max_seconds: float | None) -> None:
    if frames == 0:
        raise AudioError(f"{name}: audio has no samples")
    if max_seconds is not None and frames > max_seconds * sr:
        raise LimitError(
            f"{name}: audio is {seconds_past(frames / sr, 1, up=True)} s long, the limit is {max_seconds:g} s"
        )


MAX_AMPLITUDE = 2**31  # 32-bit integer PCM's full scale; float audio lies within ±1


def _to_model_input(
    name: str, data: np.ndarray, sr: int, target_sr: int, resampler: Resampler = resample_ratio
) -> np.ndarray:
    """Mono at `target_sr`. Refused: non-finite samples, and samples beyond MAX_AMPLITUDE (a sample
    of 3e38 overflowed the feature extractors' float32 into NaN scores; the wav2vec2 normalisation
    already drifted past 1e18)."""
    peak = float(np.max(np.abs(data)))  # NaN when any sample is NaN
    if not math.isfinite(peak):
        raise AudioError(f"{name}: audio contains NaN or infinite samples")
    if peak > MAX_AMPLITUDE:
        raise LimitError(
            f"{name}: a sample of magnitude {peak:.3g}, the limit is {MAX_AMPLITUDE} "
            "(32-bit integer full scale; float audio lies within ±1)"
        )
    return resample(to_mono(data), sr, target_sr, resampler)


BLOCK_FRAMES = 2**18


def _read_frames(f: sf.SoundFile) -> np.ndarray:
    """Every frame, block by block: memory follows the frames really there, not the count the
    header announces (a damaged MP3 header announced 1.6e12 frames, which one read tried to allocate)."""
    blocks = []
    while len(block := f.read(BLOCK_FRAMES, dtype="float32", always_2d=True)):
        blocks.append(block)
    return np.concatenate(blocks) if blocks else np.empty((0, f.channels), np.float32)


# What libsndfile (through soundfile) raises for a file it cannot read.
DECODER_ERRORS = (sf.LibsndfileError, RuntimeError, ValueError, TypeError)


@contextlib.contextmanager
def readable(name: str) -> Iterator[None]:
    """Turn the decoder's errors inside the block into one AudioError naming the file."""
    try:
        yield
    except AudioError:
        raise
    except DECODER_ERRORS as err:
        detail = getattr(err, "error_string", None) or err  # libsndfile's message, without the handle
        raise AudioError(f"{name}: not a readable audio file ({detail})") from err


def check_file(name: str) -> None:
    """Raise AudioError for a path that is not a file, or an empty one (libsndfile's own words for
    an empty file suggest a pipe)."""
    path = Path(name)
    if not path.is_file():
        raise AudioError(f"audio file not found: {name}")
    if not path.stat().st_size:
        raise AudioError(f"{name}: empty file (0 bytes)")


def header_seconds(path: str | Path) -> float:
    """The duration a file's header states; 0 when unreadable (reading it says why)."""
    try:
        return sf.info(str(path)).duration
    except DECODER_ERRORS:
        return 0.0


@contextlib.contextmanager
def decoder_messages_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for the block: libmpg123, inside libsndfile, prints notes
    on a damaged MP3 straight there. For the CLI only: in a server, other threads' log lines would
    be lost with them."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def load_audio(
    source: str | Path | bytes,
    target_sr: int = TARGET_SAMPLING_RATE,
    max_seconds: float | None = None,
    resampler: Resampler = resample_ratio,
) -> np.ndarray:
    """Decode a file path or raw bytes into mono float32 at `target_sr` (resampled by `resampler`).

    Raises AudioError for undecodable, empty or non-finite input, LimitError for a clip over
    `max_seconds`, a sampling rate outside 1 kHz-384 kHz or more than 64 channels (checked from the
    header, before decoding), or a sample beyond MAX_AMPLITUDE.
    """
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise AudioError("empty upload: no audio bytes received")
        handle = io.BytesIO(source)
        name = "upload"
    else:
        handle = name = str(source)
        check_file(name)
    with readable(name), sf.SoundFile(handle) as f:
        sr = f.samplerate
        check_format(name, sr, f.channels)
        _duration_check(name, f.frames, sr, max_seconds)
        data = _read_frames(f)
    _duration_check(name, len(data), sr, None)
    return _to_model_input(name, data, sr, target_sr, resampler)


def load_samples(
    samples: np.ndarray,
    sampling_rate: int,
    target_sr: int = TARGET_SAMPLING_RATE,
    max_seconds: float | None = None,
) -> np.ndarray:
    """Validate in-memory samples, (frames,) or (frames, channels), into mono float32 at `target_sr`.

    Raises AudioError like `load_audio`.
    """
    check_format("samples", sampling_rate, 1)
    try:
        data = np.asarray(samples, dtype=np.float32)
    except (ValueError, TypeError) as err:
        raise AudioError("samples must be numbers, or frames with the same number of channels") from err
    if data.ndim not in (1, 2):
        raise AudioError(f"samples must be a list of numbers or of frames, got {data.ndim} dimensions")
    check_format("samples", sampling_rate, data.shape[1] if data.ndim == 2 else 1)
    _duration_check("samples", len(data) if data.size else 0, sampling_rate, max_seconds)
    return _to_model_input("samples", data, sampling_rate, target_sr)


def save_wav(path: str | Path, wave: np.ndarray, sampling_rate: int) -> None:
    """Write float32 mono as 16-bit PCM: WAV, or FLAC for a `.flac` path."""
    sf.write(str(path), wave, sampling_rate, subtype="PCM_16")
