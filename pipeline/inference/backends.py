"""Which backend runs a checkpoint, and on what: the full install (torch importable) or the serving
install (ONNX Runtime only), the precision asked for, and the ONNX models to run."""

from __future__ import annotations

import importlib.util
import tempfile
from functools import cache
from pathlib import Path

from ..commands import BACKENDS, PRECISIONS
from ..errors import ConfigError, SerError
from .onnx_model import ONNX_DIR, ONNX_FILES, OnnxClassifier, has_onnx


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")


def torch_installed() -> bool:
    """Whether this is the full install (torch importable), without importing it."""
    return importlib.util.find_spec("torch") is not None


def resolve_backend(backend: str, checkpoint: str | Path, device: str | None) -> str:
    """`backend` with "auto" replaced: onnx on the CPU where the checkpoint has its ONNX models
    (`ser export` writes them) or torch is not installed; torch otherwise (GPUs, fresh checkpoints)."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    if device not in (None, "cpu"):
        return "torch"
    return "onnx" if has_onnx(checkpoint) or not torch_installed() else "torch"


def default_device() -> str:
    """cuda where torch sees a GPU, else cpu (torch is not imported where it is not installed)."""
    if not torch_installed():
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: str, backend: str = "auto") -> str | None:
    """`--device` as `Predictor.from_pretrained` takes it (None: the CPU): auto is cuda where torch
    sees a GPU, unless the backend asked for is onnx (CPU only)."""
    if device == "auto":
        device = "cpu" if backend == "onnx" else default_device()
    return None if device == "cpu" else device


@cache
def _exported_for_this_process(checkpoint: Path) -> Path:
    """A checkpoint without `onnx/`: exported once per process into a temporary directory (the full
    install only: the exporter is torch's)."""
    if not torch_installed():
        raise SerError(
            f"{checkpoint} has no {ONNX_DIR}/ models of its weights: run `ser export --checkpoint "
            f"{checkpoint}` with the full install (pip install 'ser-toolkit[train]') first"
        )
    from .onnx_export import export_onnx

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
    if has_onnx(checkpoint):
        return Path(checkpoint) / ONNX_DIR / ONNX_FILES[precision]
    return _exported_for_this_process(Path(checkpoint).resolve()) / ONNX_FILES[precision]


def onnx_classifier(checkpoint: str | Path, precision: str, device: str | None, threads: int | None = None):
    """The ONNX Runtime classifier of `checkpoint` ("auto" is fp32 there; CPU only) on `threads`
    threads (None: one per physical core)."""
    if device not in (None, "cpu"):
        raise ConfigError(f"the onnx backend runs on the CPU, not {device}; use --backend torch there")
    precision = "fp32" if precision == "auto" else precision
    return OnnxClassifier(onnx_file(checkpoint, precision), precision, threads)
