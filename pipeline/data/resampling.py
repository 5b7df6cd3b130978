"""Resampling in numpy alone, for a server installed without torch: torchaudio's `resample` (its
default Hann-windowed sinc, 6 zero crossings, rolloff 0.99) sample for sample, to float rounding
(tests/test_frontend.py)."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

LOWPASS_FILTER_WIDTH = 6
ROLLOFF = 0.99
BLOCK = 2**21  # elements (float64) of the input frames one matmul copies: memory bounded for any length


@lru_cache(maxsize=16)  # a few rates in use; an odd rate's kernel may take 8 MB
def _kernel(orig: int, new: int) -> tuple[np.ndarray, int]:
    """(new, 2 width + orig) sinc kernel and its width, as torchaudio's `_get_sinc_resample_kernel`
    computes them for a float32 waveform (in float32, the same operations in the same order)."""
    base = min(orig, new) * ROLLOFF
    width = math.ceil(LOWPASS_FILTER_WIDTH * orig / base)
    idx = np.arange(-width, width + orig, dtype=np.float32)[None] / orig
    t = np.arange(0, -new, -1, dtype=np.float32)[:, None] / new + idx
    t *= base
    t = t.clip(-LOWPASS_FILTER_WIDTH, LOWPASS_FILTER_WIDTH)
    window = np.cos(t * math.pi / LOWPASS_FILTER_WIDTH / 2) ** 2
    t *= math.pi
    kernel = np.divide(np.sin(t), t, out=np.ones_like(t), where=t != 0)
    kernel *= window * (base / orig)
    return kernel, width


@lru_cache(maxsize=16)
def _kernel64(orig: int, new: int) -> np.ndarray:
    return _kernel(orig, new)[0].astype(np.float64)


def resample_ratio(wave: np.ndarray, orig: int, new: int) -> np.ndarray:
    """A 1-D waveform resampled by new/orig: `torchaudio.functional.resample(wave, orig, new)` in
    float32, its strided convolution one matmul per block of output frames."""
    wave = np.ascontiguousarray(wave, np.float32)
    gcd = math.gcd(orig, new)
    orig, new = orig // gcd, new // gcd
    if orig == new:
        return wave
    kernel, width = _kernel(orig, new)
    kernel64 = _kernel64(orig, new)
    frames = sliding_window_view(np.pad(wave, (width, width + orig)), kernel.shape[1])[::orig]
    out = np.empty((len(frames), new), np.float32)
    step = max(1, BLOCK // kernel.shape[1])
    for start in range(0, len(frames), step):
        # Sums in float64, rounded once: BLAS sums float32 in an order that depends on its thread
        # count, and openSMILE's functionals (a fused checkpoint's head) turn last-bit differences of
        # the samples into differences of 1e-4 in the answer.
        block = np.asarray(frames[start : start + step], np.float64) @ kernel64.T
        out[start : start + step] = block
    # torchaudio rounds the output length through float32 (torch.as_tensor of a Python float)
    return out.reshape(-1)[: math.ceil(np.float32(new * len(wave) / orig))]
