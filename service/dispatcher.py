"""One model, many request threads: a call goes to the model at once when it is idle; calls that
arrive while it is busy share its next call (up to `max_clips` clips: on a GPU concurrent requests
merge, on a CPU nothing waits for a batch to fill); a call that waited longer than `max_wait_s` is
refused with `ServiceUnavailable` (503)."""

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


@dataclass
class _Call:
    waves: list[np.ndarray]
    queued: float = field(default_factory=time.monotonic)
    answer: Future = field(default_factory=Future)


class Dispatcher:
    """`dispatcher(waves)` returns `model(waves)`, computed on the dispatcher's own thread."""

    def __init__(self, model: Callable[[list[np.ndarray]], np.ndarray], max_clips: int, max_wait_s: float):
        self.model, self.max_clips, self.max_wait_s = model, max_clips, max_wait_s
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
            self.ready.notify()
        return call.answer

    def _next_batch(self) -> list[_Call]:
        """The calls waiting now, oldest first, up to `max_clips` clips (a larger call goes alone);
        the ones that waited too long are refused."""
        with self.ready:
            while not self.queue:
                self.ready.wait()
            batch, clips, now = [], 0, time.monotonic()
            while self.queue and (not batch or clips + len(self.queue[0].waves) <= self.max_clips):
                call = self.queue.popleft()
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
            try:
                rows = self.model([wave for call in batch for wave in call.waves])
            except Exception as err:  # every caller of the batch gets the error
                for call in batch:
                    call.answer.set_exception(err)
                continue
            start = 0
            for call in batch:
                call.answer.set_result(rows[start : start + len(call.waves)])
                start += len(call.waves)
