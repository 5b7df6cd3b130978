"""A recording of any length, decoded and resampled block by block: memory stays bounded by the
block, not the recording (`ser predict` on long files, the streaming endpoint)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import AudioError
from .audio import (
    TARGET_SAMPLING_RATE,
    _to_model_input,
    check_file,
    check_format,
    readable,
    resampling_ratio,
)
from .resampling import resample_ratio

BLOCK_S = 20.0


class BlockResampler:
    """Resamples consecutive blocks of one signal to the same samples as resampling it whole (to
    float rounding): each block is resampled with its neighbours' samples as context, so its output
    waits for the next block (or `finish`)."""

    def __init__(self, orig_sr: int, target_sr: int = TARGET_SAMPLING_RATE):
        self.orig, self.new = resampling_ratio(orig_sr, target_sr) if orig_sr != target_sr else (1, 1)
        # context: the sinc kernel's reach (`resample_ratio`'s) and one period, in whole
        # periods, so that the outputs of a block start on an output sample
        reach = math.ceil(6 * self.orig / (min(self.orig, self.new) * 0.99)) + self.orig
        self.context = math.ceil(reach / self.orig) * self.orig if self.orig != self.new else 0
        self.left = np.zeros(self.context, np.float32)
        self.pending = np.empty(0, np.float32)  # input not resampled yet
        self.inputs = self.outputs = 0

    def _emit(self, upto: int, right: np.ndarray) -> np.ndarray:
        """Output for the first `upto` pending samples, with `right` as the context after them."""
        body, self.pending = self.pending[:upto], self.pending[upto:]
        self.inputs += len(body)
        wanted = math.ceil(self.inputs * self.new / self.orig) - self.outputs
        out = resample_ratio(np.concatenate([self.left, body, right]), self.orig, self.new)
        skip = self.context * self.new // self.orig
        self.left = np.concatenate([self.left, body])[len(body) + len(self.left) - self.context :]
        self.outputs += wanted
        return out[skip : skip + wanted]

    def feed(self, block: np.ndarray) -> np.ndarray:
        if self.orig == self.new:
            return block
        self.pending = np.concatenate([self.pending, block])
        ready = (len(self.pending) - self.context) // self.orig * self.orig  # keep a right context
        if ready <= 0:
            return np.empty(0, np.float32)
        return self._emit(ready, self.pending[ready : ready + self.context])

    def finish(self) -> np.ndarray:
        if self.orig == self.new or not len(self.pending):
            return np.empty(0, np.float32)
        return self._emit(len(self.pending), np.zeros(self.context, np.float32))


def audio_blocks(
    path: str | Path, target_sr: int = TARGET_SAMPLING_RATE, block_s: float = BLOCK_S
) -> Iterator[np.ndarray]:
    """Mono float32 blocks at `target_sr` of the file at `path`, about `block_s` seconds each, checked
    as `load_audio` checks a whole file. Raises AudioError for a file that cannot be read."""
    name = str(path)
    check_file(name)
    with readable(name), sf.SoundFile(name) as f:
        check_format(name, f.samplerate, f.channels)
        resampler = BlockResampler(f.samplerate, target_sr)
        frames = max(1, round(block_s * f.samplerate))
        read = 0
        while len(block := f.read(frames, dtype="float32", always_2d=True)):
            read += len(block)
            if len(out := resampler.feed(_to_model_input(name, block, f.samplerate, f.samplerate))):
                yield out
        if not read:
            raise AudioError(f"{name}: audio has no samples")
        if len(out := resampler.finish()):
            yield out
