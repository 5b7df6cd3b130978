"""One model, many request threads: a call goes to the model at once when it is idle; calls that
arrive while it is busy share its next call (up to `max_clips` clips) where merging measurably pays
(`MergeRule`), else go one by one; nothing waits for a batch to fill. A call that waited longer
than `max_wait_s` is refused with `ServiceUnavailable` (503)."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import bentoml
import numpy as np
from bentoml.exceptions import ServiceUnavailable

# Requests per model call, on /metrics (`ser_model_batch_requests_bucket`, `_count`, `_sum`).
BATCH_REQUESTS = bentoml.metrics.Histogram(
    name="ser_model_batch_requests",
    documentation="requests merged into one model call",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
# Calls waiting for the model now (`ser_model_queue`).
QUEUE = bentoml.metrics.Gauge(
    name="ser_model_queue", documentation="calls waiting for the model", multiprocess_mode="livesum"
)


class MergeRule:
    """Whether calls waiting together go to the model as one call: measured, not assumed. The
    model's seconds per second of audio are averaged for single and merged calls; merged calls are
    chosen while they cost at most `margin` of a single one's, and every `explore_every`-th choice
    takes the other way, so that a change is noticed. Merging pays where batches are cheaper per
    clip (a GPU; the small model on ONNX Runtime, 2x on a CPU) and not where they are not (a
    wav2vec2-base-sized model on a CPU: 5 %): there, one request at a time answers each sooner."""

    def __init__(self, margin: float = 0.9, explore_every: int = 16, smoothing: float = 0.2):
        self.margin, self.explore_every, self.smoothing = margin, explore_every, smoothing
        self.cost: dict[bool, float | None] = {False: None, True: None}
        self.choices = 0

    def merge(self) -> bool:
        """Whether the calls waiting now go together."""
        single, merged = self.cost[False], self.cost[True]
        if single is None or merged is None:
            return single is not None  # measure a single call first, then a merged one
        self.choices += 1
        better = merged <= self.margin * single
        return better != (self.choices % self.explore_every == 0)

    def observe(self, merged: bool, seconds: float, audio_samples: int) -> None:
        cost = seconds / max(audio_samples, 1)
        known = self.cost[merged]
        self.cost[merged] = cost if known is None else known + self.smoothing * (cost - known)


@dataclass
class _Call:
    waves: list[np.ndarray]
    queued: float = field(default_factory=time.monotonic)
    answer: Future = field(default_factory=Future)


class Dispatcher:
    """`dispatcher(waves)` returns `model(waves)`, computed on the dispatcher's own thread."""

    def __init__(
        self,
        model: Callable[[list[np.ndarray]], np.ndarray],
        max_clips: int,
        max_wait_s: float,
        rule: MergeRule | None = None,
    ):
        self.model, self.max_clips, self.max_wait_s = model, max_clips, max_wait_s
        self.rule = rule or MergeRule()
        self.queue: collections.deque[_Call] = collections.deque()
        self.ready = threading.Condition()
        threading.Thread(target=self._serve, name="model", daemon=True).start()

    def __call__(self, waves: list[np.ndarray]) -> np.ndarray:
        return self.submit(waves).result()

    def submit(self, waves: list[np.ndarray]) -> Future:
        """`model(waves)` to come: the caller may work meanwhile."""
        call = _Call(waves)
        with self.ready:
            self.queue.append(call)
            QUEUE.inc()
            self.ready.notify()
        return call.answer

    def _next_batch(self) -> list[_Call]:
        """The oldest call, with the others waiting now where merging pays (up to `max_clips` clips;
        a larger call goes alone); the ones that waited too long are refused."""
        with self.ready:
            while not self.queue:
                self.ready.wait()
            merge = self.max_clips > 1 and len(self.queue) > 1 and self.rule.merge()
            batch, clips, now = [], 0, time.monotonic()
            while self.queue and (not batch or merge and clips + len(self.queue[0].waves) <= self.max_clips):
                call = self.queue.popleft()
                QUEUE.dec()
                if now - call.queued > self.max_wait_s:
                    call.answer.set_exception(ServiceUnavailable("waited too long for the model"))
                    continue
                batch.append(call)
                clips += len(call.waves)
            return batch

    def _serve(self) -> None:
        while True:
            batch = self._next_batch()
            if not batch:
                continue
            BATCH_REQUESTS.observe(len(batch))
            waves = [wave for call in batch for wave in call.waves]
            began = time.perf_counter()
            try:
                rows = self.model(waves)
            except Exception as err:  # every caller of the batch gets the error
                for call in batch:
                    call.answer.set_exception(err)
                continue
            self.rule.observe(len(batch) > 1, time.perf_counter() - began, sum(map(len, waves)))
            start = 0
            for call in batch:
                call.answer.set_result(rows[start : start + len(call.waves)])
                start += len(call.waves)
