"""The one inference path, shared by `ser predict`, `ser evaluate`, the BentoML service and the demo.

Two backends: `onnx` (ONNX Runtime, the features in numpy: what the serving install runs, without
torch) and `torch` (the full install: GPUs, bf16, and the features training computed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..calibration import softmax
from ..data.audio import load_audio
from ..errors import ConfigError, SerError
from ..fusion import FunctionalsHead, fused_log_probabilities
from .answers import Prediction
from .backends import check_precision, resolve_backend, torch_installed

TEMPERATURE_KEY = "calibration_temperature"  # in a checkpoint's config.json, written by training


def checkpoint_labels(checkpoint: str | Path) -> list[str]:
    """The class labels in a checkpoint's config.json (`id2label`, by class id)."""
    path = Path(checkpoint) / "config.json"
    try:
        id2label = json.loads(path.read_text()).get("id2label") or {}
        labels = [id2label[key] for key in sorted(id2label, key=int)]
    except (OSError, ValueError, AttributeError, TypeError) as err:
        raise SerError(f"cannot read the labels in {path}: {err}") from err
    if not labels:
        raise SerError(f"{path} has no id2label: not a classifier checkpoint")
    return labels


def labels_of(model) -> list[str]:
    """A loaded PyTorch model's class labels (by class id)."""
    from ..model import model_labels

    return model_labels(model.config)


def checkpoint_extras(checkpoint: str | Path, labels: list[str]) -> tuple[FunctionalsHead | None, float]:
    """(the functionals head, the calibration temperature) saved in a checkpoint, where it has them."""
    head = FunctionalsHead.load(checkpoint)
    if head is not None and head.coef.shape[0] != len(labels):
        raise ConfigError(
            f"the functionals head in {checkpoint} has {head.coef.shape[0]} classes, not {len(labels)}"
        )
    try:
        temperature = float(
            json.loads((Path(checkpoint) / "config.json").read_text()).get(TEMPERATURE_KEY, 1.0)
        )
    except (OSError, ValueError, TypeError):
        temperature = 1.0  # config.json itself is checked where the model loads
    if not 0 < temperature < float("inf"):
        raise ConfigError(
            f"{TEMPERATURE_KEY} in {checkpoint}/config.json must be positive, got {temperature}"
        )
    return head, temperature


class Predictor:
    """A fine-tuned classifier and its front end, ready to classify waveforms; with the checkpoint's
    functionals head (`pipeline.fusion`) and calibration temperature where it has them."""

    def __init__(
        self,
        classifier,
        front_end,
        labels: list[str],
        head: FunctionalsHead | None = None,
        temperature: float = 1.0,
    ):
        self.classifier = classifier  # inputs → logits (numpy): `TorchClassifier` or `OnnxClassifier`
        self.front_end = front_end  # waveforms → inputs: `TorchFrontEnd` or `pipeline.frontend.FrontEnd`
        self.labels = labels
        self.head, self.temperature = head, temperature
        self.sampling_rate = front_end.sampling_rate
        # Group-norm encoders (wav2vec2-base style) must not see zero padding: run them one by one.
        self.pads_safely = front_end.return_attention_mask

    @classmethod
    def from_pretrained(
        cls,
        checkpoint: str | Path,
        device: str | None = None,
        precision: str = "auto",
        backend: str = "auto",
        threads: int | None = None,
    ) -> Predictor:
        """Load `checkpoint` onto `device` (default CPU) at `precision` (see `PRECISIONS`), run by
        ONNX Runtime (`backend="onnx"`: fp32 or int8, CPU) or PyTorch (see `resolve_backend`), on
        `threads` CPU threads (None: the backend's default; torch's setting is the process's)."""
        check_precision(precision)
        if resolve_backend(backend, checkpoint, device) == "onnx":
            from ..frontend import FrontEnd
            from .backends import onnx_classifier

            classifier = onnx_classifier(checkpoint, precision, device, threads)
            labels = checkpoint_labels(checkpoint)
            front_end = FrontEnd.from_pretrained(checkpoint)
            return cls(classifier, front_end, labels, *checkpoint_extras(checkpoint, labels))
        if not torch_installed():
            raise ConfigError(
                "the torch backend needs the full install (pip install 'ser-toolkit[train]'); "
                "this one runs --backend onnx"
            )
        from .torch_model import load_torch

        if threads:
            import torch

            torch.set_num_threads(threads)
        model, extractor = load_torch(checkpoint, device)
        return cls.from_model(model, extractor, precision, *checkpoint_extras(checkpoint, labels_of(model)))

    @classmethod
    def from_model(
        cls, model, feature_extractor, precision: str = "fp32", head=None, temperature: float = 1.0
    ) -> Predictor:
        """A loaded PyTorch model and its feature extractor (the full install), run at `precision`."""
        from .torch_model import TorchClassifier, TorchFrontEnd

        front_end = TorchFrontEnd(feature_extractor)
        classifier = TorchClassifier(model, precision, front_end)
        return cls(classifier, front_end, labels_of(model), head, temperature)

    @property
    def backend(self) -> str:
        return self.classifier.backend

    @property
    def precision(self) -> str:
        return self.classifier.precision

    @property
    def device(self) -> str:
        return self.classifier.device

    def _forward_groups(self, waves: list[np.ndarray]) -> list[list[int]]:
        """Indices of `waves` that may share one forward pass.

        Models with an attention mask ignore padding: all clips go together. Group-norm encoders
        (wav2vec2-base style) normalise over the whole padded length, so zero padding would change
        a short clip's logits: only clips of exactly equal length share a pass there. A group holds
        at most the classifier's `batch_seconds` of padded audio (but at least one clip).
        """
        limit = self.classifier.batch_seconds
        if self.pads_safely:
            groups = [list(range(len(waves)))]
            if limit is not None:  # neighbours in length share a run
                groups = [sorted(groups[0], key=lambda i: len(waves[i]))]
        else:
            by_length: dict[int, list[int]] = {}
            for i, wave in enumerate(waves):
                by_length.setdefault(len(wave), []).append(i)
            groups = list(by_length.values())
        if limit is None:
            return groups
        return [part for group in groups for part in self._split(waves, group, limit)]

    def _split(self, waves: list[np.ndarray], group: list[int], limit: float) -> list[list[int]]:
        """`group` (indices by rising length) in runs of at most `limit` seconds of padded audio."""
        parts: list[list[int]] = [[]]
        for i in group:
            if parts[-1] and (len(parts[-1]) + 1) * len(waves[i]) > limit * self.sampling_rate:
                parts.append([])
            parts[-1].append(i)
        return parts

    def network_logits(self, waves: list[np.ndarray]) -> np.ndarray:
        """The network's own logits (what `transformers.pipeline` computes from the checkpoint) for a
        list of 1-D waveforms at `self.sampling_rate`; in fp32 and int8 a clip's logits do not
        depend on what else is in the list (in bf16 they agree to bf16 rounding)."""
        out = np.empty((len(waves), len(self.labels)), dtype=np.float32)
        for group in self._forward_groups(waves):
            seconds = len(group) * max(len(waves[i]) for i in group) / self.sampling_rate
            out[group] = self.classifier(self.front_end([waves[i] for i in group]), seconds)
        return out

    def head_log_probabilities(self, waves: list[np.ndarray]) -> np.ndarray | None:
        """The functionals head's part of the answer (None without a head): clip by clip, so a
        server computes it in each request's thread while the network serves merged requests."""
        return None if self.head is None else self.head.log_probabilities(waves)

    def answer_logits(self, network_logits, head_log_probabilities: np.ndarray | None) -> np.ndarray:
        """The answer's logits from its parts: the network's logits, fused with the head's
        log-probabilities where the checkpoint has a head, divided by the calibration temperature."""
        out = np.asarray(network_logits, dtype=np.float32)
        if head_log_probabilities is not None:
            out = fused_log_probabilities(out, head_log_probabilities, self.head.weight).astype(np.float32)
        return out / np.float32(self.temperature)

    def answer_probabilities(self, network_logits, head_log_probabilities: np.ndarray | None) -> np.ndarray:
        """(clips, len(self.labels)) class probabilities from the answer's parts (`answer_logits`)."""
        return softmax(self.answer_logits(network_logits, head_log_probabilities)).astype(np.float32)

    def logits(self, waves: list[np.ndarray]) -> np.ndarray:
        """The answer's logits of a list of 1-D waveforms at `self.sampling_rate`."""
        return self.answer_logits(self.network_logits(waves), self.head_log_probabilities(waves))

    def probabilities(self, waves: list[np.ndarray]) -> np.ndarray:
        """(len(waves), len(self.labels)) class probabilities."""
        return self.answer_probabilities(self.network_logits(waves), self.head_log_probabilities(waves))

    def predict(self, waves: list[np.ndarray]) -> list[Prediction]:
        return [Prediction.from_scores(row, self.labels) for row in self.probabilities(waves)]

    def predict_source(self, source: str | Path | bytes, max_seconds: float | None = None) -> Prediction:
        """Decode a file path or bytes (any rate, any channels) and classify it."""
        return self.predict([load_audio(source, self.sampling_rate, max_seconds=max_seconds)])[0]
