"""The model behind the API: one batchable call that concurrent requests share (adaptive batching).

Reached from the API service through `bentoml.depends`; it listens on a private Unix socket, not
on the public port.
"""

from __future__ import annotations

import bentoml
import numpy as np

from pipeline.inference.export import stored_model
from pipeline.inference.memory import retain_freed_memory
from pipeline.inference.predictor import Predictor
from service.settings import SETTINGS

retain_freed_memory()  # before BentoML's worker threads, which run the model, start allocating


# The API service's client to this one never renews its connection pool: BentoML 1.4 (>=1.4.30,<1.5)
# renews it every 100 calls by closing it under the calls still in flight, which then fail ("Server
# disconnected"), and now and then the call that renews it hangs until the 60-s timeout (504).
@bentoml.service(workers=1, runner_connection={"max_requests": 2**31 - 1, "max_age": 1e9})
class EmotionModel:
    """Class probabilities for batches of 16 kHz mono waveforms."""

    def __init__(self) -> None:
        self.predictor = Predictor.from_pretrained(
            stored_model(SETTINGS.model_tag).path, SETTINGS.device, SETTINGS.precision, SETTINGS.backend
        )
        self.predictor.probabilities([np.zeros(self.predictor.sampling_rate, dtype=np.float32)])  # warm-up

    @bentoml.api
    def describe(self) -> dict[str, str]:
        """Where, by what and at what precision the model runs ("auto" resolved)."""
        return {
            "backend": SETTINGS.backend,
            "precision": self.predictor.precision,
            "device": str(self.predictor.device),
        }

    @bentoml.api(**SETTINGS.batching)
    def probabilities(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        """One row of class probabilities per waveform; a clip's row does not depend on the
        others in its batch (see `Predictor.logits`)."""
        return list(self.predictor.probabilities(waves))
