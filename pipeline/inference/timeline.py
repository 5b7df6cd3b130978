"""The spans of a recording to classify, found block by block: speech segments (a voice-activity
detector, long ones cut into windows) or fixed windows. The same spans whether the recording comes
whole (a clip: one block) or in blocks (a file of any length); without a timeline, the whole
recording is one span."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import chain

import numpy as np

from ..commands import INFERENCE_BATCH
from ..errors import OptionError
from .vad import SpeechDetector, VadConfig, split_long

# A speech segment longer than this (or than window_s, when given) is cut into such windows: about
# the length the models train on (3-s crops), short enough to follow an emotion that changes.
SEGMENT_WINDOW_S = 4.0
Span = tuple[int, int]


def window_starts(n_samples: int, window: int, hop: int) -> list[int]:
    """Starts of `window`-sample windows every `hop` samples; the last one ends at the clip's end,
    so every window has the same length (a clip no longer than one window is one window)."""
    if n_samples <= window:
        return [0]
    starts = list(range(0, n_samples - window, hop))
    return starts + [n_samples - window]


class Spans:
    """Feed consecutive blocks; get the (start, end) samples to classify as soon as they are known.

    `segments="vad"`: speech segments, silence left out, each longer than `window` cut into
    `window`-long pieces every `hop`; otherwise fixed windows as `window_starts` places them.
    """

    def __init__(self, sampling_rate: int, window: int, hop: int, segments: str | None, vad: VadConfig):
        self.window, self.hop = window, hop
        self.detector = SpeechDetector(sampling_rate, vad) if segments == "vad" else None
        self.seen = 0
        self.next_start = 0  # fixed windows: the next start to give out

    def _pieces(self, segments: list[Span]) -> list[Span]:
        return [piece for start, end in segments for piece in split_long(start, end, self.window, self.hop)]

    def feed(self, block: np.ndarray) -> list[Span]:
        self.seen += len(block)
        if self.detector is not None:
            return self._pieces(self.detector.feed(block))
        # window_starts places a start s before the last window iff s + window < the length
        starts = range(self.next_start, max(self.next_start, self.seen - self.window), self.hop)
        self.next_start += len(starts) * self.hop
        return [(s, s + self.window) for s in starts]

    def finish(self) -> list[Span]:
        if self.detector is not None:
            return [(s, min(e, self.seen)) for s, e in self._pieces(self.detector.finish())]
        starts = window_starts(self.seen, self.window, self.hop)
        return [
            (s, min(s + self.window, self.seen)) for s in starts if s >= self.next_start or s == starts[-1]
        ]

    def earliest(self) -> int:
        """No span given out later starts before this sample."""
        if self.detector is not None:
            return self.detector.earliest()
        return min(self.next_start, max(0, self.seen - self.window))


class WholeRecording:
    """The recording as one span, known at its end (a clip's answer without a timeline)."""

    def __init__(self):
        self.seen = 0

    def feed(self, block: np.ndarray) -> list[Span]:
        self.seen += len(block)
        return []

    def finish(self) -> list[Span]:
        return [(0, self.seen)]

    def earliest(self) -> int:
        return 0


class Recent:
    """The samples of a recording from some point on: appended block by block, dropped from the front."""

    def __init__(self):
        self.blocks: list[np.ndarray] = []
        self.offset = 0  # the sample number of the first one held

    def append(self, block: np.ndarray) -> None:
        self.blocks.append(block)

    def _held(self) -> np.ndarray:
        if len(self.blocks) > 1:
            self.blocks = [np.concatenate(self.blocks)]
        return self.blocks[0]

    def span(self, start: int, end: int) -> np.ndarray:
        return self._held()[start - self.offset : end - self.offset]

    def drop_before(self, sample: int) -> None:
        held = self._held()
        cut = max(0, min(sample - self.offset, len(held)))
        self.blocks, self.offset = [held[cut:]], self.offset + cut


def classify_blocks(
    blocks: Iterable[np.ndarray],
    spans: Spans | WholeRecording,
    probabilities: Callable[[list[np.ndarray]], np.ndarray],
    batch_size: int | None = INFERENCE_BATCH,
    max_spans: int | None = None,
) -> Iterator[tuple[Span, np.ndarray]]:
    """((start, end), class probabilities) of each span of the recording `blocks`, in order, holding
    only the samples that later spans may still need. `batch_size` spans per call (None: all in one
    call at the end); more than `max_spans` spans are refused before the model sees them."""
    recent, pending, found = Recent(), [], 0
    for block in chain(blocks, [None]):
        if block is None:
            new = spans.finish()
        else:
            recent.append(block)
            new = spans.feed(block)
        found += len(new)
        if max_spans is not None and found > max_spans:
            raise OptionError(f"{found} windows: the limit is {max_spans}; use a longer hop_s")
        pending += new
        while pending and (block is None or batch_size is not None and len(pending) >= batch_size):
            size = batch_size or len(pending)
            group, pending = pending[:size], pending[size:]
            rows = np.asarray(probabilities([recent.span(s, e) for s, e in group]))
            yield from zip(group, rows)
        if block is not None:
            recent.drop_before(min([s for s, _ in pending] + [spans.earliest()]))
