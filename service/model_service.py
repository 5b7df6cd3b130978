"""The model behind the API: one batchable call that concurrent requests share (adaptive batching).

Reached from the API service through `bentoml.depends`; it listens on a private Unix socket, not
on the public port.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import bentoml
import numpy as np

from pipeline.allocator import retain_freed_memory
from pipeline.export import stored_model
from pipeline.inference import Predictor
from service.settings import SETTINGS

retain_freed_memory()  # before the thread that runs the model starts allocating


# The API service's client to this one never renews its connection pool: BentoML 1.4 renews it
# every 100 calls by closing it under the calls still in flight, which then fail ("Server
# disconnected"), and now and then the call that renews it hangs until the 60-s timeout (504).
@bentoml.service(workers=1, runner_connection={"max_requests": 2**31 - 1, "max_age": 1e9})
class EmotionModel:
    """Class probabilities for batches of 16 kHz mono waveforms."""

    def __init__(self) -> None:
        self.predictor = Predictor.from_pretrained(
            stored_model(SETTINGS.model_tag).path, SETTINGS.device, SETTINGS.precision
        )
        # Every forward pass runs on this one thread: on a thread pool, each new thread that calls
        # the model starts its own OpenMP team, which made a single request 10-18 % slower.
        self.runner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        warm_up = [np.zeros(self.predictor.sampling_rate, dtype=np.float32)]
        self.runner.submit(self.predictor.probabilities, warm_up).result()

    @bentoml.api
    def describe(self) -> dict[str, str]:
        """Where and at what precision the model runs ("auto" resolved)."""
        return {"precision": self.predictor.precision, "device": str(self.predictor.device)}

    @bentoml.api(**SETTINGS.batching)
    async def probabilities(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        """One row of class probabilities per waveform; a clip's row does not depend on the
        others in its batch (see `Predictor.logits`)."""
        loop = asyncio.get_running_loop()
        return list(await loop.run_in_executor(self.runner, self.predictor.probabilities, waves))
