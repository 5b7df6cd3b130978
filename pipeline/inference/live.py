"""Live speech: audio arrives in chunks, and every `update_s` seconds of it the emotion of the last
`window_s` seconds is answered; at the end, a summary. Shared by the streaming endpoint (WebSocket)
and the demo's live tab."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..arguments import option
from ..data.audio import TARGET_SAMPLING_RATE
from ..data.blocks import BlockResampler
from .answers import MIN_SECONDS, Answers
from .vad import SpeechDetector


@dataclass(frozen=True)
class LiveConfig:
    window_s: float = option(3.0, "each answer is the emotion of the last this many seconds")
    update_s: float = option(0.5, "an answer every this many seconds of audio")


class LiveSession:
    """One live stream: `feed` chunks of mono float32 at `sampling_rate`, get its answers."""

    def __init__(
        self,
        sampling_rate: int,
        probabilities: Callable[[list[np.ndarray]], np.ndarray],
        labels: list[str],
        config: LiveConfig = LiveConfig(),
        target_sr: int = TARGET_SAMPLING_RATE,
    ):
        self.probabilities, self.labels, self.sr = probabilities, labels, target_sr
        self.resampler = BlockResampler(sampling_rate, target_sr)
        self.window = round(config.window_s * target_sr)
        self.step = round(config.update_s * target_sr)
        self.recent = np.zeros(0, np.float32)  # the last `window` samples
        self.speech = SpeechDetector(target_sr)
        self.heard = 0  # samples up to the end of the last speech segment found
        self.received = 0
        self.next_update = self.step
        self.answers = Answers(labels, target_sr)

    def _update(self) -> dict:
        start = self.received - len(self.recent)
        row = np.asarray(self.probabilities([self.recent]))[0]
        speech = self.speech.in_speech or self.heard > start
        return {"type": "update", **self.answers.span((start, self.received), row), "speech": bool(speech)}

    def _append(self, samples: np.ndarray) -> None:
        self.received += len(samples)
        self.recent = np.concatenate([self.recent, samples])[-self.window :]

    def feed(self, chunk: np.ndarray) -> list[dict]:
        """The answers due after `chunk`: at most one, for the newest window, however long the
        chunk (a late client is not answered for every step it skipped)."""
        samples = self.resampler.feed(np.asarray(chunk, np.float32))
        self._append(samples)
        for _, end in self.speech.feed(samples):
            self.heard = end
        if self.received < self.next_update:
            return []
        self.next_update += (self.received - self.next_update) // self.step * self.step + self.step
        return [self._update()]

    def summary(self) -> dict:
        """{type: summary, duration_s, updates} and, when anything was answered, the mean of the
        answers' probabilities (label, score, scores)."""
        self._append(self.resampler.finish())
        if not self.answers.count and len(self.recent) >= MIN_SECONDS * self.sr:
            self._update()  # a stream shorter than one step still gets its answer
        result = {"type": "summary", "duration_s": round(self.received / self.sr, 3)}
        if self.answers.count:
            result.update(self.answers.overall(self.received))
        return {**result, "updates": self.answers.count}
