"""Every answer of `ser predict`, the REST API and the demo: a whole clip's emotion or a timeline
(fixed windows or speech segments) plus its aggregate. One function builds them, so all three agree."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from ..arguments import option
from ..errors import LimitError, OptionError, seconds_past
from .timeline import SEGMENT_WINDOW_S, Span, Spans
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
        """The spans this timeline classifies, for a recording at `sampling_rate` (windows of at
        most `MAX_SPAN_S`)."""
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


def segment_answer(
    span: Span, row: np.ndarray, sampling_rate: int, labels: list[str], top_k: int | None
) -> dict:
    start, end = span
    return {
        "start": round(start / sampling_rate, 3),
        "end": round(end / sampling_rate, 3),
        **answer(row, labels, top_k),
    }


class Overall:
    """The recording's answer from its spans: their probabilities' mean, weighted by duration
    (plain for fixed windows, which all have one length)."""

    def __init__(self):
        self.total, self.seconds, self.count = 0.0, 0.0, 0

    def add(self, span: Span, row: np.ndarray) -> None:
        self.total = self.total + row * (span[1] - span[0])
        self.seconds += span[1] - span[0]
        self.count += 1

    def answer(self, labels: list[str], top_k: int | None) -> dict:
        if not self.seconds:
            raise LimitError(
                "no speech found (voice-activity detector); leave out segments to classify the whole clip"
            )
        return answer(self.total / self.seconds, labels, top_k)


def check_duration(seconds: float) -> None:
    if seconds < MIN_SECONDS:
        shown = seconds_past(seconds, 3, up=False)
        raise LimitError(f"audio is {shown} s long, the minimum is {MIN_SECONDS:g} s")


def classify_wave(
    wave: np.ndarray,
    sampling_rate: int,
    labels: list[str],
    probabilities: Callable[[list[np.ndarray]], np.ndarray],
    options: Options = Options(),
) -> dict:
    """{label, score, scores, duration_s} for `wave`, plus `segments` when a timeline is asked for.

    `probabilities(waves)` returns one row per wave (a Predictor's, or the service's dispatcher),
    called once. With a timeline, the clip-level answer is the mean of its spans' probabilities.
    """
    options.check(len(labels))
    duration = len(wave) / sampling_rate
    check_duration(duration)
    if not options.timeline:
        return {
            **answer(np.asarray(probabilities([wave]))[0], labels, options.top_k),
            "duration_s": round(duration, 3),
        }
    spans = options.spans(sampling_rate)
    found = spans.feed(wave) + spans.finish()
    if len(found) > MAX_WINDOWS:
        raise OptionError(f"{len(found)} windows: the limit is {MAX_WINDOWS}; use a longer hop_s")
    rows = np.asarray(probabilities([wave[s:e] for s, e in found])) if found else []
    overall = Overall()
    for span, row in zip(found, rows):
        overall.add(span, row)
    return {
        **overall.answer(labels, options.top_k),
        "duration_s": round(duration, 3),
        "segments": [
            segment_answer(span, row, sampling_rate, labels, options.top_k) for span, row in zip(found, rows)
        ],
    }
