"""Every answer of `ser predict`, the REST API, the live stream and the demo: a whole clip's emotion
or a timeline (fixed windows or speech segments) plus its aggregate. One builder (`Answers`) makes
them, so all of them agree."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np

from ..arguments import option
from ..commands import INFERENCE_BATCH
from ..errors import LimitError, OptionError, seconds_past
from .timeline import SEGMENT_WINDOW_S, Span, Spans, WholeRecording, classify_blocks
from .vad import VadConfig

MIN_SECONDS = 0.1  # shorter clips do not fill the encoder's receptive field
MIN_WINDOW_S = 0.5
MIN_HOP_S = 0.1
MAX_WINDOWS = 1000
MAX_SPAN_S = 60.0  # the longest window: the model's attention grows with its square


@dataclass
class Prediction:
    label: str
    score: float
    scores: dict[str, float]

    @classmethod
    def from_scores(cls, probabilities: np.ndarray, labels: list[str]) -> Prediction:
        best = int(np.argmax(probabilities))
        scores = {label: float(p) for label, p in zip(labels, probabilities)}
        return cls(label=labels[best], score=float(probabilities[best]), scores=scores)

    def to_dict(self) -> dict:
        return asdict(self)


SEGMENTS = ("vad",)


@dataclass(frozen=True)
class Options:
    """How to answer: the `top_k` best labels (None: all, in label order), and an optional
    timeline: of `window_s` windows every `hop_s` seconds (hop defaults to the window), or with
    `segments="vad"` of speech segments (silence left out; longer ones cut into `window_s` windows,
    `SEGMENT_WINDOW_S` by default)."""

    top_k: int | None = option(None, "only the k most probable labels, best first; none: all")
    window_s: float | None = option(None, "add a timeline of windows this long (seconds)")
    hop_s: float | None = option(None, "seconds between window starts; none: the window")
    segments: str | None = option(
        None,
        "vad: a timeline of speech segments (voice-activity detector), silence left out",
        choices=SEGMENTS,
    )
    MINIMUM: ClassVar[dict[str, float]] = {"top_k": 1, "window_s": MIN_WINDOW_S, "hop_s": MIN_HOP_S}

    def check(self, n_labels: int) -> None:
        """Raise OptionError for values no clip could satisfy."""
        if self.top_k is not None and not 1 <= self.top_k <= n_labels:
            raise OptionError(f"top_k must be between 1 and {n_labels}, got {self.top_k}")
        if self.hop_s is not None and self.window_s is None:
            raise OptionError("hop_s needs window_s")
        if self.window_s is not None and not MIN_WINDOW_S <= self.window_s < math.inf:
            raise OptionError(f"window_s must be at least {MIN_WINDOW_S} s and finite, got {self.window_s}")
        if self.hop_s is not None and not MIN_HOP_S <= self.hop_s < math.inf:
            raise OptionError(f"hop_s must be at least {MIN_HOP_S} s and finite, got {self.hop_s}")
        if self.segments not in (None, *SEGMENTS):
            raise OptionError(f"segments must be one of {', '.join(SEGMENTS)}, got {self.segments!r}")

    @property
    def timeline(self) -> bool:
        return self.window_s is not None or self.segments is not None

    def spans(self, sampling_rate: int, vad: VadConfig | None = None) -> Spans:
        """The spans to classify in a recording at `sampling_rate`: the whole of it without a
        timeline, else windows of at most `MAX_SPAN_S`."""
        if not self.timeline:
            return WholeRecording()
        window_s = self.window_s or SEGMENT_WINDOW_S
        window = round(min(window_s, MAX_SPAN_S) * sampling_rate)
        hop = round(min(self.hop_s or window_s, MAX_SPAN_S) * sampling_rate)
        return Spans(sampling_rate, window, hop, self.segments, vad or VadConfig())


def answer(probabilities: np.ndarray, labels: list[str], top_k: int | None) -> dict:
    """{label, score, scores} of one row of class probabilities, with only the `top_k` best scores."""
    prediction = Prediction.from_scores(probabilities, labels).to_dict()
    if top_k is not None:
        best = sorted(prediction["scores"].items(), key=lambda item: -item[1])[:top_k]
        prediction["scores"] = dict(best)
    return prediction


def check_duration(seconds: float) -> None:
    if seconds < MIN_SECONDS:
        shown = seconds_past(seconds, 3, up=False)
        raise LimitError(f"audio is {shown} s long, the minimum is {MIN_SECONDS:g} s")


class Answers:
    """The one builder of answers, for a clip, a recording read in blocks and a live stream: each
    classified span's answer as it comes (`span`), and the recording's (`overall`): the mean of its
    spans' probabilities weighted by duration (plain for fixed windows, which all have one length;
    a single span's own)."""

    def __init__(self, labels: list[str], sampling_rate: int, top_k: int | None = None):
        self.labels, self.sr, self.top_k = labels, sampling_rate, top_k
        self.total, self.samples, self.count, self.row = 0.0, 0, 0, None

    def span(self, span: Span, row: np.ndarray) -> dict:
        """{start, end, label, score, scores} of `span` (samples), counted in the overall answer."""
        start, end = span
        self.total = self.total + row * (end - start)
        self.samples += end - start
        self.count += 1
        self.row = row
        return {"start": round(start / self.sr, 3), "end": round(end / self.sr, 3), **self.answer(row)}

    def answer(self, row: np.ndarray) -> dict:
        return answer(row, self.labels, self.top_k)

    def overall(self, samples: int) -> dict:
        """{label, score, scores, duration_s} of a recording of `samples` samples."""
        if not self.samples:
            raise LimitError(
                "no speech found (voice-activity detector); leave out segments to classify the whole clip"
            )
        mean = self.row if self.count == 1 else self.total / self.samples
        return {**self.answer(mean), "duration_s": round(samples / self.sr, 3)}


def answer_blocks(
    blocks: Iterable[np.ndarray],
    sampling_rate: int,
    labels: list[str],
    probabilities: Callable[[list[np.ndarray]], np.ndarray],
    options: Options = Options(),
    vad: VadConfig | None = None,
    batch_size: int | None = INFERENCE_BATCH,
    write: Callable[[dict], None] | None = None,
) -> dict:
    """The answer for the recording `blocks` (a clip is a recording of one block): {label, score,
    scores, duration_s}, plus its timeline when `options` asks for one: `segments`, or, with
    `write`, each segment written as it is known and their number in `segments_written`.

    `probabilities(waves)` returns one row per wave (a Predictor's, or the service's dispatcher);
    `batch_size` spans go together, None: all of them in one call at the end (at most MAX_WINDOWS).
    """
    options.check(len(labels))
    samples, segments = 0, []

    def counted() -> Iterator[np.ndarray]:
        nonlocal samples
        for block in blocks:
            samples += len(block)
            yield block
        check_duration(samples / sampling_rate)

    found = Answers(labels, sampling_rate, options.top_k)
    spans = options.spans(sampling_rate, vad)
    limit = MAX_WINDOWS if batch_size is None else None
    for span, row in classify_blocks(counted(), spans, probabilities, batch_size, limit):
        segment = found.span(span, row)
        if options.timeline:
            (write or segments.append)(segment)
    timeline = {"segments_written": found.count} if write else {"segments": segments}
    return {**found.overall(samples), **(timeline if options.timeline else {})}


def classify_wave(
    wave: np.ndarray,
    sampling_rate: int,
    labels: list[str],
    probabilities: Callable[[list[np.ndarray]], np.ndarray],
    options: Options = Options(),
) -> dict:
    """The answer for a clip held in memory: its spans in one call."""
    return answer_blocks([wave], sampling_rate, labels, probabilities, options, batch_size=None)
