"""Registers a fine-tuned checkpoint in the BentoML model store, and finds it again for serving."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..commands import DEFAULT_MODEL_NAME
from ..errors import SerError, first_line
from .backends import torch_installed
from .onnx_model import ONNX_DIR, has_onnx
from .predictor import checkpoint_labels

DEFAULT_TAG = f"{DEFAULT_MODEL_NAME}:latest"
REQUIRED_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")


def _bentoml():
    """BentoML, imported with its usage tracking off unless the user asked for it."""
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    import bentoml

    return bentoml


def _without_none(value: Any) -> Any:
    """BentoML metadata rejects None: drop such entries (recursively)."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value if v is not None]
    return value


def _test_metrics(checkpoint: Path) -> dict[str, Any]:
    """The `test` section (or the whole file) of the run's metrics.json, if there is one."""
    for path in (checkpoint / "metrics.json", checkpoint.parent / "metrics.json"):
        if path.is_file():
            metrics = json.loads(path.read_text())
            if isinstance(metrics, dict):
                return _without_none(metrics.get("test", metrics))
    return {}


def _write_onnx(checkpoint: Path) -> None:
    """The checkpoint's ONNX models into its `onnx/`, unless those of its weights are there."""
    if has_onnx(checkpoint):
        return
    if not torch_installed():
        raise SerError(
            f"{checkpoint} has no ONNX models of its weights: write them with the full install "
            "(`pip install 'ser-toolkit[train]'`, then `ser export`)"
        )
    from .onnx_export import export_onnx  # torch and transformers: not for `ser serve`'s start

    try:
        export_onnx(checkpoint, checkpoint / ONNX_DIR)
    except Exception as err:  # the exporter raises many kinds, e.g. for an operator it cannot convert
        raise SerError(
            f"cannot export {checkpoint} to ONNX ({first_line(err)}); "
            "`ser export --no-onnx` registers it for the torch backend only"
        ) from err


def export_checkpoint(checkpoint_dir: str | Path, name: str = DEFAULT_MODEL_NAME, onnx: bool = True) -> str:
    """Copy a `save_pretrained` checkpoint directory into the BentoML model store, with its ONNX
    models (written into its `onnx/` first, what the serving install and `--backend onnx` run)
    unless `onnx` is false; return the tag. Nothing is registered when a step fails."""
    checkpoint = Path(checkpoint_dir)
    missing = [f for f in REQUIRED_FILES if not (checkpoint / f).is_file()]
    if not checkpoint.is_dir() or missing:
        raise SerError(
            f"not a checkpoint directory: {checkpoint} (missing {', '.join(missing) or 'directory'}); "
            "expected the output of `ser train`, e.g. runs/<name>/best"
        )
    try:
        metadata = {
            "labels": checkpoint_labels(checkpoint),
            "source": str(checkpoint.resolve()),
            "test_metrics": _test_metrics(checkpoint),
        }
    except (ValueError, KeyError) as err:  # json.JSONDecodeError is a ValueError
        raise SerError(f"cannot read the config or metrics of {checkpoint}: {err}") from err
    if onnx:
        _write_onnx(checkpoint)
    bentoml = _bentoml()
    try:
        with bentoml.models.create(
            name,
            labels={"task": "speech-emotion-recognition", "framework": "transformers"},
            metadata=metadata,
        ) as model:
            # without ONNX: for the torch backend only (no stale onnx/ of a checkpoint's earlier export)
            ignore = None if onnx else shutil.ignore_patterns(ONNX_DIR)
            shutil.copytree(checkpoint, model.path, dirs_exist_ok=True, ignore=ignore)
    except ValueError as err:  # an invalid model name
        raise SerError(f"cannot register {checkpoint} as {name!r}: {err}") from err
    return str(model.tag)


def served_tag() -> str:
    """The model tag the service loads: SER_MODEL_TAG, or ser-emotion:latest."""
    return os.environ.get("SER_MODEL_TAG") or DEFAULT_TAG


def stored_model(tag: str = DEFAULT_TAG):
    """The `bentoml.Model` registered under `tag` (its `.tag` is resolved, `.path` holds the files)."""
    bentoml = _bentoml()
    from bentoml.exceptions import BentoMLException

    try:
        return bentoml.models.get(tag)
    except (BentoMLException, ValueError) as err:
        raise SerError(
            f"model {tag!r} is not in the BentoML model store ({err}); run `ser export` first"
        ) from err
