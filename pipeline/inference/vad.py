"""Voice-activity detection: where the speech is in a recording, read block by block.

Two ways to tell speech frames from the rest (chosen by measurement: docs/long_audio.md):

- `silero` (default): Silero VAD's neural network (`pipeline/assets/`: the sequence model of the
  `silero-vad` 6.2.3 wheel, MIT licence, kept here because that wheel requires torch; run by ONNX
  Runtime, no download), a speech probability per 32-ms frame, with hysteresis: speech from `threshold`
  on, until it falls below `threshold - 0.15`. Robust to quiet recordings and rumble.
- `energy`: a 10-ms frame is speech when its level is `margin_db` above the noise floor (which
  starts at the quietest tenth of the first block's frames, drops at once and rises by
  `floor_rise_db_per_s`) and above `min_level_db`. Thirty times faster; for clean, loud speech.

Either way, speech frames less than `min_silence_s` apart join one segment, segments shorter than
`min_speech_s` are dropped, the rest get `pad_s` of context on each side, and speech without a
pause is cut every `max_segment_s` (so what is held stays bounded).
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import numpy as np

from ..arguments import option
from ..errors import OptionError

DETECTORS = ("silero", "energy")
SILERO_MODEL = "silero_vad_16k_sequence.onnx"


@dataclass(frozen=True)
class VadConfig:
    detector: str = option("silero", "how speech frames are told apart", choices=DETECTORS, flag="--vad")
    threshold: float = option(
        0.5, "silero: a frame is speech from this probability on", flag="--vad-threshold"
    )
    margin_db: float = option(
        12.0, "energy: speech is this many dB above the noise floor", flag="--vad-margin-db"
    )
    min_level_db: float = option(-50.0, "energy: and at least this loud (dBFS)", flag="--vad-min-level-db")
    floor_rise_db_per_s: float = option(
        3.0, "energy: how fast the noise floor follows a louder background", flag="--vad-floor-rise-db-per-s"
    )
    min_silence_s: float = option(
        0.3, "pauses shorter than this stay inside a segment", flag="--vad-min-silence-s"
    )
    min_speech_s: float = option(0.2, "segments shorter than this are dropped", flag="--vad-min-speech-s")
    pad_s: float = option(0.1, "context kept before and after each segment", flag="--vad-pad-s")
    max_segment_s: float = option(60.0, "speech without a pause is cut here", flag="--vad-max-segment-s")

    def check(self) -> None:
        """Raise OptionError for settings no recording could use."""
        if not 0 < self.threshold < 1:
            raise OptionError(f"the VAD threshold is a probability between 0 and 1, got {self.threshold}")
        seconds = {
            "min_silence_s": self.min_silence_s,
            "min_speech_s": self.min_speech_s,
            "pad_s": self.pad_s,
        }
        for name, value in seconds.items():
            if not 0 <= value <= 60:
                raise OptionError(f"vad {name} must be between 0 and 60 s, got {value}")
        if not 1 <= self.max_segment_s <= 3600:
            raise OptionError(f"vad max_segment_s must be between 1 and 3600 s, got {self.max_segment_s}")


def frame_levels(frames: np.ndarray) -> np.ndarray:
    """Level in dB (full scale = 0) of each row of (n, frame) samples."""
    return 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-10)


class EnergyFrames:
    """Speech decisions for 10-ms frames from their level against a running noise floor."""

    def __init__(self, sampling_rate: int, config: VadConfig):
        self.frame, self.config = round(sampling_rate * 0.01), config
        self.rise = config.floor_rise_db_per_s * 0.01
        self.floor = np.inf

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(n, frame) samples → n booleans."""
        levels = frame_levels(frames)
        if self.floor == np.inf and len(levels):  # speech at the very start needs a floor below it
            self.floor = float(np.percentile(levels, 10))
        speech = np.zeros(len(levels), bool)
        for i, level in enumerate(levels):
            self.floor = min(level, self.floor + self.rise)
            speech[i] = level > self.floor + self.config.margin_db and level > self.config.min_level_db
        return speech


@cache
def _silero_session():
    """Silero VAD's sequence model (a block of frames per call), on one thread."""
    import onnxruntime

    path = str(importlib.resources.files("pipeline") / "assets" / SILERO_MODEL)
    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = options.intra_op_num_threads = 1
    options.enable_cpu_mem_arena = False  # request threads run it at once: an arena would keep each one's
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


class SileroFrames:
    """Speech decisions for 32-ms frames (16 kHz) from Silero VAD's probabilities, one ONNX call
    per block, its recurrent state carried from block to block."""

    CONTEXT = 64

    def __init__(self, sampling_rate: int, config: VadConfig):
        if sampling_rate != 16_000:
            raise ValueError("the silero detector reads 16 kHz audio")
        self.frame, self.threshold = 512, config.threshold
        self.release = max(config.threshold - 0.15, 0.01)
        self.session = _silero_session()
        self.state = [np.zeros((1, 1, 128), np.float32), np.zeros((1, 1, 128), np.float32)]
        self.context = np.zeros(self.CONTEXT, np.float32)
        self.speaking = False

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        if not len(frames):
            return np.zeros(0, bool)
        contexts = np.concatenate([self.context[None], frames[:-1, -self.CONTEXT :]])
        self.context = frames[-1, -self.CONTEXT :].copy()
        block = np.concatenate([contexts, frames], axis=1).astype(np.float32)
        probabilities, *self.state = self.session.run(
            ["speech_probs", "hn", "cn"], {"input": block, "h": self.state[0], "c": self.state[1]}
        )
        speech = np.zeros(len(frames), bool)
        for i, p in enumerate(probabilities.reshape(-1)):
            self.speaking = p >= self.threshold or (self.speaking and p >= self.release)
            speech[i] = self.speaking
        return speech


class SpeechDetector:
    """Feed consecutive blocks of one recording; get the finished speech segments, in samples."""

    def __init__(self, sampling_rate: int, config: VadConfig = VadConfig()):
        self.frames_of = (SileroFrames if config.detector == "silero" else EnergyFrames)(
            sampling_rate, config
        )
        self.frame = self.frames_of.frame
        seconds = self.frame / sampling_rate
        self.pad = round(config.pad_s / seconds)
        self.gap = round(config.min_silence_s / seconds)
        self.shortest = round(config.min_speech_s / seconds)
        self.longest = max(self.shortest, round(config.max_segment_s / seconds))
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
        whole = len(wave) // self.frame * self.frame
        self.rest = wave[whole:]
        decisions = self.frames_of(wave[:whole].reshape(-1, self.frame))
        done = []
        for i, speech in enumerate(decisions, start=self.frames):
            if speech:
                if self.start is None:
                    self.start = i
                self.last = i
                if i + 1 - self.start >= self.longest:
                    done += self._segment(seen=i + 1)
            elif self.start is not None and i - self.last > self.gap:
                done += self._segment(seen=i + 1)
        self.frames += len(decisions)
        return done

    @property
    def in_speech(self) -> bool:
        """Whether a segment is open (speech heard and not yet followed by a long enough pause)."""
        return self.start is not None

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
