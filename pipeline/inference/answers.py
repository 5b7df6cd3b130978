"""Every answer of `ser predict`, the REST API and the demo: a whole clip's emotion or, with a
window, a timeline of windows plus their aggregate. One function builds them, so all three agree."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from ..arguments import option
from ..errors import LimitError, OptionError, seconds_past

MIN_SECONDS = 0.1  # shorter clips do not fill the encoder's receptive field
MIN_WINDOW_S = 0.5
MIN_HOP_S = 0.1
MAX_WINDOWS = 1000


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


@dataclass(frozen=True)
class Options:
    """How to answer: the `top_k` best labels (None: all, in label order), and an optional
    timeline of `window_s` windows every `hop_s` seconds (hop defaults to the window)."""

    top_k: int | None = option(None, "only the k most probable labels, best first; none: all")
    window_s: float | None = option(None, "add a timeline of windows this long (seconds)")
    hop_s: float | None = option(None, "seconds between window starts; none: the window")

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


def _samples(seconds: float, clip_samples: int, sampling_rate: int) -> int:
    """`seconds` in samples, at most the clip's length (1e308 s times the rate would overflow)."""
    return clip_samples if seconds >= clip_samples / sampling_rate else round(seconds * sampling_rate)


def window_starts(n_samples: int, window: int, hop: int) -> list[int]:
    """Starts of `window`-sample windows every `hop` samples; the last one ends at the clip's end,
    so every window has the same length (a clip no longer than one window is one window)."""
    if n_samples <= window:
        return [0]
    starts = list(range(0, n_samples - window, hop))
    return starts + [n_samples - window]


def _answer(probabilities: np.ndarray, labels: list[str], top_k: int | None) -> dict:
    prediction = Prediction.from_scores(probabilities, labels).to_dict()
    if top_k is not None:
        best = sorted(prediction["scores"].items(), key=lambda item: -item[1])[:top_k]
        prediction["scores"] = dict(best)
    return prediction


def classify_wave(
    wave: np.ndarray,
    sampling_rate: int,
    labels: list[str],
    probabilities: Callable[[list[np.ndarray]], np.ndarray],
    options: Options = Options(),
) -> dict:
    """{label, score, scores, duration_s} for `wave`, plus `segments` when a window is asked for.

    `probabilities(waves)` returns one row per wave (a Predictor's, or the service's dispatcher). With
    a window, the clip-level answer is the mean of the windows' probabilities.
    """
    options.check(len(labels))
    duration = len(wave) / sampling_rate
    if duration < MIN_SECONDS:
        shown = seconds_past(duration, 3, up=False)
        raise LimitError(f"audio is {shown} s long, the minimum is {MIN_SECONDS:g} s")
    if options.window_s is None:
        return {
            **_answer(np.asarray(probabilities([wave]))[0], labels, options.top_k),
            "duration_s": round(duration, 3),
        }
    window = _samples(options.window_s, len(wave), sampling_rate)
    hop = _samples(options.hop_s or options.window_s, len(wave), sampling_rate)
    starts = window_starts(len(wave), window, hop)
    if len(starts) > MAX_WINDOWS:
        raise OptionError(f"{len(starts)} windows: the limit is {MAX_WINDOWS}; use a longer hop_s")
    rows = np.asarray(probabilities([wave[s : s + window] for s in starts]))
    segments = [
        {
            "start": round(s / sampling_rate, 3),
            "end": round(min(s + window, len(wave)) / sampling_rate, 3),
            **_answer(row, labels, options.top_k),
        }
        for s, row in zip(starts, rows)
    ]
    return {
        **_answer(rows.mean(axis=0), labels, options.top_k),
        "duration_s": round(duration, 3),
        "segments": segments,
    }
