"""The one inference path, shared by `ser predict`, `ser evaluate`, the BentoML service and the demo."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoFeatureExtractor

from .audio import load_audio
from .model import load_checkpoint, model_labels


@dataclass
class Prediction:
    label: str
    score: float
    scores: dict[str, float]

    def to_dict(self) -> dict:
        return asdict(self)


class Predictor:
    """A fine-tuned checkpoint directory, ready to classify waveforms."""

    def __init__(self, model, feature_extractor):
        self.model = model.eval()
        self.feature_extractor = feature_extractor
        self.labels = model_labels(model)
        self.sampling_rate = feature_extractor.sampling_rate
        # Group-norm encoders (wav2vec2-base style) must not see zero padding: run them one by one.
        self.pads_safely = bool(getattr(feature_extractor, "return_attention_mask", False))

    @classmethod
    def from_pretrained(cls, checkpoint: str | Path, device: str | None = None) -> Predictor:
        model = load_checkpoint(checkpoint)
        extractor = AutoFeatureExtractor.from_pretrained(checkpoint)
        if device:
            model.to(device)
        return cls(model, extractor)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def logits(self, waves: list[np.ndarray]) -> torch.Tensor:
        """Logits for a list of 1-D waveforms at `self.sampling_rate`."""
        if not waves:
            return torch.empty(0, len(self.labels))
        if not self.pads_safely and len(waves) > 1:
            return torch.cat([self.logits([w]) for w in waves])
        inputs = self.feature_extractor(
            waves, sampling_rate=self.sampling_rate, padding=True, return_tensors="pt"
        )
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        return self.model(**inputs).logits.float().cpu()

    def predict(self, waves: list[np.ndarray]) -> list[Prediction]:
        probs = torch.softmax(self.logits(waves), dim=-1).numpy()
        out = []
        for row in probs:
            best = int(row.argmax())
            scores = {label: float(p) for label, p in zip(self.labels, row)}
            out.append(Prediction(label=self.labels[best], score=float(row[best]), scores=scores))
        return out

    def predict_source(self, source: str | Path | bytes, max_seconds: float | None = None) -> Prediction:
        """Decode a file path or bytes (any rate, any channels) and classify it."""
        return self.predict([load_audio(source, self.sampling_rate, max_seconds=max_seconds)])[0]
