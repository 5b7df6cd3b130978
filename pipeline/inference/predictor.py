"""The one inference path, shared by `ser predict`, `ser evaluate`, the BentoML service and the demo."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoFeatureExtractor

from ..config import BACKENDS, PRECISIONS
from ..data.audio import load_audio
from ..errors import ConfigError
from ..features import input_features
from ..fusion import FunctionalsHead, fused_log_probabilities
from ..model import load_checkpoint, model_labels
from .answers import Prediction


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 natively (CUDA GPUs from Ampere, CPUs with AVX512-BF16 or AMX);
    on a CPU that is not yet faster: `Predictor.from_model` times it."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return (
        device.type == "cpu"
        and torch.backends.mkldnn.is_available()
        and torch.ops.mkldnn._is_mkldnn_bf16_supported()  # private; torch is pinned (2.11.0)
    )


# Below this size bf16 loses more to casting than it gains (the demo model, 0.1 M parameters, runs
# 0.78x as fast in bf16; a wav2vec2-base-sized one, 95 M, 1.71x: `scripts/bench_precision.py`).
AUTO_BF16_MIN_PARAMETERS = 10_000_000


def resolve_precision(precision: str, device: torch.device, parameters: int) -> str:
    """`precision` with "auto" replaced: bf16 for a model of at least `AUTO_BF16_MIN_PARAMETERS`
    on a `device` that computes bf16 natively, else fp32."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision == "int8" and device.type != "cpu":
        raise ConfigError("int8 (dynamic quantization) runs on the CPU only; use bf16 on a GPU")
    if precision == "auto":
        return "bf16" if native_bf16(device) and parameters >= AUTO_BF16_MIN_PARAMETERS else "fp32"
    return precision


def quantized(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic quantization: linear-layer weights stored as int8, activations quantized per batch
    at run time (the transformer's matrix products; the convolutional encoder stays fp32)."""
    with warnings.catch_warnings():  # torch.ao's deprecation notice points at torchao, not needed here
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.ao.quantization.quantize_dynamic(model.eval(), {torch.nn.Linear}, dtype=torch.qint8)


def at_precision(model: torch.nn.Module, precision: str, device: torch.device) -> tuple[torch.nn.Module, str]:
    """(`model` ready to run at `precision` on `device`, the precision with "auto" resolved): int8
    quantizes it; bf16 runs under `autocast`."""
    precision = resolve_precision(precision, device, model.num_parameters())
    return (quantized(model) if precision == "int8" else model), precision


def autocast(precision: str, device: torch.device):
    """The forward's context: bf16 autocast (convolutions and matrix products in bf16, norms and
    softmax in fp32) for "bf16", a no-op otherwise."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def bf16_pays(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> bool:
    """Whether the CPU runs `model` on `inputs` faster under bf16 autocast than in fp32 (best of 3
    after a warm-up each). CPUs that report native bf16 differ: a wav2vec2-base-sized model ran
    1.71x as fast in bf16 on an AMD EPYC and 0.59x on an Intel Xeon without AMX."""

    def best_seconds(precision: str) -> float:
        times = []
        for _ in range(4):
            start = time.perf_counter()
            with torch.inference_mode(), autocast(precision, torch.device("cpu")):
                model(**inputs)
            times.append(time.perf_counter() - start)
        return min(times[1:])

    return best_seconds("bf16") < best_seconds("fp32")


class TorchClassifier:
    """A PyTorch classifier at a precision: `classifier(inputs)` → fp32 logits on the CPU."""

    def __init__(self, model: torch.nn.Module, precision: str = "fp32"):
        device = next(model.parameters()).device
        self.model, self.precision = at_precision(model.eval(), precision, device)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def __call__(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with autocast(self.precision, self.device):
            return self.model(**inputs).logits.float().cpu()


def onnx_classifier(checkpoint: str | Path, precision: str, device: str | None):
    """The ONNX Runtime classifier of `checkpoint` ("auto" is fp32 there; CPU only)."""
    from .onnx_model import OnnxClassifier, onnx_file

    if device not in (None, "cpu"):
        raise ConfigError(f"the onnx backend runs on the CPU, not {device}; use --backend torch there")
    precision = "fp32" if precision == "auto" else precision
    return OnnxClassifier(onnx_file(checkpoint, precision), precision)


TEMPERATURE_KEY = "calibration_temperature"  # in a checkpoint's config.json, written by training


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
    """A fine-tuned classifier and its feature extractor, ready to classify waveforms; with the
    checkpoint's functionals head (`pipeline.fusion`) and calibration temperature where it has them."""

    def __init__(
        self,
        classifier,
        feature_extractor,
        labels: list[str],
        head: FunctionalsHead | None = None,
        temperature: float = 1.0,
    ):
        self.classifier = classifier  # inputs → logits: `TorchClassifier` or `OnnxClassifier`
        self.feature_extractor = feature_extractor
        self.features = input_features(feature_extractor)
        self.labels = labels
        self.head, self.temperature = head, temperature
        self.sampling_rate = feature_extractor.sampling_rate
        # Group-norm encoders (wav2vec2-base style) must not see zero padding: run them one by one.
        self.pads_safely = bool(getattr(feature_extractor, "return_attention_mask", False))

    @classmethod
    def from_model(
        cls, model, feature_extractor, precision: str = "fp32", head=None, temperature: float = 1.0
    ) -> Predictor:
        """A loaded PyTorch model, run at `precision`; "auto" on a CPU keeps bf16 only where a
        1-s probe shows it faster than fp32."""
        labels = model_labels(model.config)
        predictor = cls(TorchClassifier(model, precision), feature_extractor, labels, head, temperature)
        classifier = predictor.classifier
        if precision == "auto" and classifier.precision == "bf16" and classifier.device.type == "cpu":
            probe = np.random.default_rng(0).standard_normal(predictor.sampling_rate).astype(np.float32)
            if not bf16_pays(classifier.model, predictor.features([probe * 0.1])):
                classifier.precision = "fp32"
        return predictor

    @classmethod
    def from_pretrained(
        cls,
        checkpoint: str | Path,
        device: str | None = None,
        precision: str = "auto",
        backend: str = "torch",
    ) -> Predictor:
        """Load `checkpoint` onto `device` (default CPU) at `precision` (see `PRECISIONS`), run by
        PyTorch or (`backend="onnx"`, fp32 or int8, CPU) ONNX Runtime."""
        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
        extractor = AutoFeatureExtractor.from_pretrained(checkpoint)
        if backend == "onnx":
            labels = model_labels(AutoConfig.from_pretrained(checkpoint, trust_remote_code=False))
            extras = checkpoint_extras(checkpoint, labels)
            return cls(onnx_classifier(checkpoint, precision, device), extractor, labels, *extras)
        model = load_checkpoint(checkpoint)
        if device:
            model.to(device)
        return cls.from_model(
            model, extractor, precision, *checkpoint_extras(checkpoint, model_labels(model.config))
        )

    @property
    def precision(self) -> str:
        return self.classifier.precision

    @property
    def device(self) -> torch.device:
        return self.classifier.device

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
    def network_logits(self, waves: list[np.ndarray]) -> torch.Tensor:
        """The network's own logits (what `transformers.pipeline` computes from the checkpoint) for a
        list of 1-D waveforms at `self.sampling_rate`; in fp32 and int8 a clip's logits do not
        depend on what else is in the list (in bf16 they agree to bf16 rounding)."""
        out = torch.empty(len(waves), len(self.labels))
        for group in self._forward_groups(waves):
            out[group] = self.classifier(self.features([waves[i] for i in group]))
        return out

    def head_log_probabilities(self, waves: list[np.ndarray]) -> np.ndarray | None:
        """The functionals head's part of the answer (None without a head): clip by clip, so a
        server computes it in each request's thread while the network serves merged requests."""
        return None if self.head is None else self.head.log_probabilities(waves)

    def answer_logits(self, network_logits, head_log_probabilities: np.ndarray | None) -> torch.Tensor:
        """The answer's logits from its parts: the network's logits, fused with the head's
        log-probabilities where the checkpoint has a head, divided by the calibration temperature."""
        out = torch.as_tensor(network_logits, dtype=torch.float32)
        if head_log_probabilities is not None:
            fused = fused_log_probabilities(out.numpy(), head_log_probabilities, self.head.weight)
            out = torch.from_numpy(fused.astype(np.float32))
        return out / self.temperature

    def answer_probabilities(self, network_logits, head_log_probabilities: np.ndarray | None) -> np.ndarray:
        """(clips, len(self.labels)) class probabilities from the answer's parts (`answer_logits`)."""
        return torch.softmax(self.answer_logits(network_logits, head_log_probabilities), dim=-1).numpy()

    def logits(self, waves: list[np.ndarray]) -> torch.Tensor:
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
