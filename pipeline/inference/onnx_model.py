"""The ONNX Runtime backend: a checkpoint's classifier exported to ONNX (fp32, and int8 with dynamic
quantization of the matrix products), run by an `onnxruntime` session on the CPU."""

from __future__ import annotations

import logging
import tempfile
import warnings
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, SerError, first_line
from ..model import load_checkpoint

ONNX_DIR = "onnx"  # inside a checkpoint directory or a stored model
ONNX_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
OPSET = 17
ONNX_TYPES = {"tensor(float)": np.float32, "tensor(int32)": np.int32, "tensor(int64)": np.int64}


def _example_inputs(extractor) -> dict[str, torch.Tensor]:
    """Two clips of different lengths, so that the trace keeps batch and time dynamic."""
    waves = [np.zeros(extractor.sampling_rate, dtype=np.float32), np.zeros(12_000, dtype=np.float32)]
    waves[0][::7] = 0.1  # not silent: normalisation must not divide by zero
    waves[1][::5] = 0.1
    inputs = extractor(waves, sampling_rate=extractor.sampling_rate, padding=True, return_tensors="pt")
    return {name: inputs[name] for name in extractor.model_input_names if name in inputs}


def export_onnx(checkpoint: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Write `out_dir/model.onnx` (fp32) and `out_dir/model.int8.onnx` for a fine-tuned checkpoint;
    return them by precision. Inputs are the feature extractor's (batch and time dynamic), the
    output is `logits`."""
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


@cache
def _exported_for_this_process(checkpoint: Path) -> Path:
    """A checkpoint without `onnx/`: exported once per process into a temporary directory."""
    out = Path(tempfile.mkdtemp(prefix="ser-onnx-"))
    export_onnx(checkpoint, out)
    return out


def onnx_file(checkpoint: str | Path, precision: str) -> Path:
    """The ONNX model for `checkpoint` at `precision` ("fp32" or "int8"): the one `ser export` wrote
    into `checkpoint/onnx/`, else one exported now."""
    if precision not in ONNX_FILES:
        raise ConfigError(
            f"the onnx backend runs fp32 or int8, not {precision}; use --backend torch for bf16"
        )
    stored = Path(checkpoint) / ONNX_DIR / ONNX_FILES[precision]
    if stored.is_file():
        return stored
    return _exported_for_this_process(Path(checkpoint).resolve()) / ONNX_FILES[precision]


class OnnxClassifier:
    """`classifier(inputs)` → logits, for the feature extractor's inputs (numpy or torch)."""

    device = torch.device("cpu")

    def __init__(self, path: Path, precision: str):
        import onnxruntime

        self.precision = precision
        options = onnxruntime.SessionOptions()  # threads: one per physical core
        options.log_severity_level = 3  # errors only
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own untyped errors for bad files
            raise SerError(f"cannot load the ONNX model {path}: {first_line(err)}") from err
        self.input_types = {i.name: ONNX_TYPES[i.type] for i in self.session.get_inputs()}

    def __call__(self, inputs: dict) -> torch.Tensor:
        feed = {name: np.asarray(inputs[name], dtype=dtype) for name, dtype in self.input_types.items()}
        return torch.from_numpy(self.session.run(["logits"], feed)[0])
