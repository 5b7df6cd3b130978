"""Voice-activity detection: where the speech is in a recording, read block by block.

An energy detector of our own (why not a packaged neural one: docs/long_audio.md). Each 10-ms frame
is speech when its level is `margin_db` above the noise floor, which starts at the quietest tenth
of the first block's frames and follows the quietest recent ones (it drops at once and rises by
`floor_rise_db_per_s`), and above `min_level_db`. Speech
frames less than `min_silence_s` apart join one segment; segments shorter than `min_speech_s` are
dropped (clicks), the rest get `pad_s` of context on each side.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..arguments import option

FRAME_S = 0.01


@dataclass(frozen=True)
class VadConfig:
    margin_db: float = option(
        12.0, "a frame is speech this many dB above the noise floor", flag="--vad-margin-db"
    )
    min_level_db: float = option(
        -50.0, "and at least this loud (dB relative to full scale)", flag="--vad-min-level-db"
    )
    floor_rise_db_per_s: float = option(
        3.0, "how fast the noise floor follows a louder background", flag="--vad-floor-rise-db-per-s"
    )
    min_silence_s: float = option(
        0.3, "pauses shorter than this stay inside a segment", flag="--vad-min-silence-s"
    )
    min_speech_s: float = option(0.2, "segments shorter than this are dropped", flag="--vad-min-speech-s")
    pad_s: float = option(0.1, "context kept before and after each segment", flag="--vad-pad-s")
    max_segment_s: float = option(
        60.0, "speech without a pause is cut here (bounds what is held)", flag="--vad-max-segment-s"
    )


def frame_levels(wave: np.ndarray, frame: int) -> np.ndarray:
    """Level in dB (full scale = 0) of each whole `frame`-sample frame of `wave`."""
    frames = wave[: len(wave) // frame * frame].reshape(-1, frame).astype(np.float64)
    return 10 * np.log10(np.mean(frames**2, axis=1) + 1e-10)


class SpeechDetector:
    """Feed consecutive blocks of one recording; get the finished speech segments, in samples."""

    def __init__(self, sampling_rate: int, config: VadConfig = VadConfig()):
        self.config = config
        self.frame = round(sampling_rate * FRAME_S)
        self.pad = round(config.pad_s / FRAME_S)
        self.gap = round(config.min_silence_s / FRAME_S)
        self.shortest = round(config.min_speech_s / FRAME_S)
        self.longest = max(self.shortest, round(config.max_segment_s / FRAME_S))
        self.rise = config.floor_rise_db_per_s * FRAME_S
        self.floor = np.inf
        self.frames = 0  # frames seen
        self.rest = np.empty(0, np.float32)  # samples short of a whole frame
        self.start: int | None = None  # first speech frame of the open segment
        self.last = 0  # last speech frame of the open segment
        self.previous_end = 0  # the end frame of the last segment given out

    def _segment(self, seen: int) -> list[tuple[int, int]]:
        """The open segment, closed with `seen` frames read: [] when it is too short."""
        start, last, self.start = self.start, self.last, None
        if last + 1 - start < self.shortest:
            return []
        begin = max(start - self.pad, self.previous_end)
        self.previous_end = end = min(last + 1 + self.pad, seen)
        return [(begin * self.frame, end * self.frame)]

    def feed(self, block: np.ndarray) -> list[tuple[int, int]]:
        """Segments (start, end sample) that ended for good by the end of `block`."""
        wave = np.concatenate([self.rest, block]) if len(self.rest) else block
        levels = frame_levels(wave, self.frame)
        self.rest = wave[len(levels) * self.frame :]
        if self.floor == np.inf and len(levels):  # speech at the very start needs a floor below it
            self.floor = float(np.percentile(levels, 10))
        done = []
        for i, level in enumerate(levels, start=self.frames):
            self.floor = min(level, self.floor + self.rise)
            if level > self.floor + self.config.margin_db and level > self.config.min_level_db:
                if self.start is None:
                    self.start = i
                self.last = i
                if i + 1 - self.start >= self.longest:
                    done += self._segment(seen=i + 1)
            elif self.start is not None and i - self.last > self.gap:
                done += self._segment(seen=i + 1)
        self.frames += len(levels)
        return done

    def earliest(self) -> int:
        """No segment given out later starts before this sample."""
        start = self.frames if self.start is None else self.start
        return max(start - self.pad, self.previous_end) * self.frame

    def finish(self) -> list[tuple[int, int]]:
        """The segment still open at the end of the recording, if any."""
        if self.start is None:
            return []
        return self._segment(seen=self.frames + (len(self.rest) > 0))


def speech_segments(
    wave: np.ndarray, sampling_rate: int, config: VadConfig = VadConfig()
) -> list[tuple[int, int]]:
    """(start, end) samples of each stretch of speech in `wave`, silence left out."""
    detector = SpeechDetector(sampling_rate, config)
    segments = detector.feed(wave) + detector.finish()
    return [(start, min(end, len(wave))) for start, end in segments]


def split_long(start: int, end: int, window: int, hop: int) -> Iterator[tuple[int, int]]:
    """A segment longer than `window` as `window`-long pieces every `hop` samples, the last one
    ending at the segment's end (as the fixed windows of a whole clip); a shorter one as itself."""
    if end - start <= window:
        yield start, end
        return
    for offset in [*range(0, end - start - window, hop), end - start - window]:
        yield start + offset, start + offset + window
