"""The one inference path, shared by `ser predict`, `ser evaluate`, the BentoML service and the demo."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoFeatureExtractor

from .audio import load_audio
from .config import QUANTIZATIONS
from .errors import ConfigError
from .model import load_checkpoint, model_labels


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


def quantized(model: torch.nn.Module, kind: str) -> torch.nn.Module:
    """Dynamic quantization: linear-layer weights stored as int8, activations quantized per batch
    at run time (the transformer's matrix products; the convolutional encoder stays fp32)."""
    if kind not in QUANTIZATIONS:
        raise ConfigError(f"unknown quantization {kind!r}; choose from {', '.join(QUANTIZATIONS)}")
    with warnings.catch_warnings():  # torch.ao's deprecation notice points at torchao, not needed here
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.ao.quantization.quantize_dynamic(model.eval(), {torch.nn.Linear}, dtype=torch.qint8)


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
    def from_pretrained(
        cls, checkpoint: str | Path, device: str | None = None, quantize: str | None = None
    ) -> Predictor:
        """Load `checkpoint`; `quantize="int8"` makes its linear layers dynamic int8 (CPU only)."""
        model = load_checkpoint(checkpoint)
        extractor = AutoFeatureExtractor.from_pretrained(checkpoint)
        if quantize:
            model = quantized(model, quantize)
        if device:
            model.to(device)
        return cls(model, extractor)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _forward_groups(self, waves: list[np.ndarray]) -> list[list[int]]:
        """Indices of `waves` that may share one forward pass.

        Models with an attention mask ignore padding: all clips go together. Group-norm encoders
        (wav2vec2-base style) normalise over the whole padded length, so zero padding would change
        a short clip's logits: only clips of exactly equal length share a pass there.
        """
        if self.pads_safely:
            return [list(range(len(waves)))]
        groups: dict[int, list[int]] = {}
        for i, wave in enumerate(waves):
            groups.setdefault(len(wave), []).append(i)
        return list(groups.values())

    @torch.inference_mode()
    def logits(self, waves: list[np.ndarray]) -> torch.Tensor:
        """Logits for a list of 1-D waveforms at `self.sampling_rate`; a clip's logits do not
        depend on what else is in the list."""
        out = torch.empty(len(waves), len(self.labels))
        for group in self._forward_groups(waves):
            inputs = self.feature_extractor(
                [waves[i] for i in group], sampling_rate=self.sampling_rate, padding=True, return_tensors="pt"
            )
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            out[group] = self.model(**inputs).logits.float().cpu()
        return out

    def probabilities(self, waves: list[np.ndarray]) -> np.ndarray:
        """(len(waves), len(self.labels)) class probabilities."""
        return torch.softmax(self.logits(waves), dim=-1).numpy()

    def predict(self, waves: list[np.ndarray]) -> list[Prediction]:
        return [Prediction.from_scores(row, self.labels) for row in self.probabilities(waves)]

    def predict_source(self, source: str | Path | bytes, max_seconds: float | None = None) -> Prediction:
        """Decode a file path or bytes (any rate, any channels) and classify it."""
        return self.predict([load_audio(source, self.sampling_rate, max_seconds=max_seconds)])[0]
