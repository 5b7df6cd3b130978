"""`ser export`'s ONNX models: a checkpoint's classifier traced by torch (the full install), fp32 and
int8 (dynamic quantization of the matrix products), for the serving runtime (`onnx_model`)."""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from ..model import load_checkpoint
from .onnx_model import FINGERPRINT, ONNX_FILES, weights_digest

OPSET = 17


def _example_inputs(extractor) -> dict[str, torch.Tensor]:
    """Two clips of different lengths, so that the trace keeps batch and time dynamic."""
    waves = [np.zeros(extractor.sampling_rate, dtype=np.float32), np.zeros(12_000, dtype=np.float32)]
    waves[0][::7] = 0.1  # not silent: normalisation must not divide by zero
    waves[1][::5] = 0.1
    inputs = extractor(waves, sampling_rate=extractor.sampling_rate, padding=True, return_tensors="pt")
    return {name: inputs[name] for name in extractor.model_input_names if name in inputs}


def export_onnx(checkpoint: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Write `out_dir/model.onnx` (fp32) and `out_dir/model.int8.onnx` for a fine-tuned checkpoint,
    and the digest of the weights they come from; return them by precision. Inputs are the feature
    extractor's (batch and time dynamic), the output is `logits`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoFeatureExtractor

    model = load_checkpoint(checkpoint).eval()
    inputs = _example_inputs(AutoFeatureExtractor.from_pretrained(checkpoint))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {precision: out / name for precision, name in ONNX_FILES.items()}
    dynamic = {name: {0: "batch", 1: "time"} for name in inputs} | {"logits": {0: "batch"}}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # tracer notes on Python branches that are shape-independent here
        torch.onnx.export(
            model,
            (),
            str(paths["fp32"]),
            kwargs=inputs,
            input_names=list(inputs),
            output_names=["logits"],
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
        )
    with _root_logger_silenced():  # the quantizer's notes on tensors it leaves in fp32
        quantize_dynamic(paths["fp32"], paths["int8"], weight_type=QuantType.QInt8)
    (out / FINGERPRINT).write_text(weights_digest(checkpoint) + "\n")
    return paths


@contextmanager
def _root_logger_silenced():
    """No root-logger output, and no handler left behind by `logging.warning`'s implicit basicConfig."""
    root, quiet = logging.getLogger(), logging.NullHandler()
    level = root.level
    root.addHandler(quiet)
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
        root.removeHandler(quiet)
