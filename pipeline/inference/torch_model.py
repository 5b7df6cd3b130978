"""The torch backend (the full install): a PyTorch classifier at a precision, on the CPU or a GPU,
with the features training computed (`pipeline.features`)."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import torch
from transformers import AutoFeatureExtractor
from transformers.utils.logging import disable_progress_bar

from ..errors import ConfigError
from ..features import input_features
from ..model import load_checkpoint
from .backends import check_precision

# Below this size bf16 loses more to casting than it gains (the demo model, 0.1 M parameters, runs
# 0.78x as fast in bf16; a wav2vec2-base-sized one, 95 M, 1.71x: `scripts/bench_precision.py`).
AUTO_BF16_MIN_PARAMETERS = 10_000_000


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 natively (CUDA GPUs from Ampere, CPUs with AVX512-BF16 or AMX);
    on a CPU that is not yet faster: `TorchClassifier` times it for "auto"."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return (
        device.type == "cpu"
        and torch.backends.mkldnn.is_available()
        and torch.ops.mkldnn._is_mkldnn_bf16_supported()  # private; torch is pinned (2.11.0)
    )


def resolve_precision(precision: str, device: torch.device, parameters: int) -> str:
    """`precision` with "auto" replaced: bf16 for a model of at least `AUTO_BF16_MIN_PARAMETERS`
    on a `device` that computes bf16 natively, else fp32."""
    check_precision(precision)
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


class TorchFrontEnd:
    """A checkpoint's feature extractor as training applied it: waveforms → padded torch inputs."""

    def __init__(self, extractor):
        self.extractor = extractor
        self.sampling_rate = extractor.sampling_rate
        self.return_attention_mask = bool(getattr(extractor, "return_attention_mask", False))
        self.features = input_features(extractor)

    def __call__(self, waves: list[np.ndarray]) -> dict[str, torch.Tensor]:
        return self.features(waves)


class TorchClassifier:
    """A PyTorch classifier at a precision: `classifier(inputs)` → fp32 logits (numpy). "auto" on a
    CPU keeps bf16 only where a 1-s probe through `front_end` shows it faster than fp32."""

    backend = "torch"
    batch_seconds = None  # a batch of any length (a GPU's memory is the user's to size)

    def __init__(
        self, model: torch.nn.Module, precision: str = "fp32", front_end: TorchFrontEnd | None = None
    ):
        device = next(model.parameters()).device
        self.precision = resolve_precision(precision, device, model.num_parameters())
        self.model = quantized(model) if self.precision == "int8" else model.eval()
        if precision == "auto" and self.precision == "bf16" and device.type == "cpu" and front_end:
            probe = np.random.default_rng(0).standard_normal(front_end.sampling_rate).astype(np.float32)
            if not bf16_pays(self.model, front_end([probe * 0.1])):
                self.precision = "fp32"

    @property
    def device(self) -> str:
        return str(next(self.model.parameters()).device)

    @torch.inference_mode()
    def __call__(self, inputs: dict[str, torch.Tensor], seconds: float = 0.0) -> np.ndarray:
        device = next(self.model.parameters()).device
        inputs = {k: torch.as_tensor(v).to(device) for k, v in inputs.items()}
        with autocast(self.precision, device):
            return self.model(**inputs).logits.float().cpu().numpy()


def load_torch(checkpoint: str | Path, device: str | None):
    """(model on `device`, default CPU; its feature extractor) of a saved checkpoint."""
    disable_progress_bar()  # stderr keeps an error to one line ("Loading weights" drew a bar there)
    model = load_checkpoint(checkpoint)
    if device:
        model.to(device)
    return model, AutoFeatureExtractor.from_pretrained(checkpoint)
