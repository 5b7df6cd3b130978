"""Checkpoints on disk: the `best/` model directory and full training states for `--resume`.

Every write goes to a temporary sibling that is renamed into place, so an interrupted save never
leaves a half-written directory where a reader (serving, `--resume`) would pick it up. Weights are
safetensors; the optimizer, scheduler and RNG states are plain tensors and numbers, loaded back with
`torch.load(weights_only=True)`, so no pickled code is ever executed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .errors import SerError

STATE_FILE = "trainer_state.json"  # written last: a checkpoint without it is incomplete
_STEP_DIR = re.compile(r"^step-(\d+)$")


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yields an empty temporary directory that replaces `target` once the block has finished."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp")
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    yield tmp
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def write_file_atomic(path: Path, data: bytes | str) -> None:
    """Writes a file through a temporary name, so readers see the old or the new content, never half."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


def save_model_dir(model, extractor, target: Path) -> None:
    """A `from_pretrained`-loadable directory (safetensors weights, config, feature extractor)."""
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        extractor.save_pretrained(tmp)


def rng_state() -> dict[str, torch.Tensor]:
    """The torch RNG streams of this process (CPU and, if present, every CUDA device)."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["cpu"])
    cuda = [state[k] for k in sorted(state) if k.startswith("cuda")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def save_training_state(
    target: Path,
    *,
    model_state: dict[str, torch.Tensor] | None = None,
    states: dict[str, dict] | None = None,
    trainer_state: dict | None = None,
) -> None:
    """One process's part of a full checkpoint: every process saves its RNG state (in `states`), the
    main process the model weights, the optimizer/scheduler states and, last, the JSON trainer state."""
    target.mkdir(parents=True, exist_ok=True)
    if model_state is not None:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in model_state.items()}, target / "model.safetensors"
        )
    for name, state in (states or {}).items():
        torch.save(state, target / f"{name}.pt")
    if trainer_state is not None:
        (target / STATE_FILE).write_text(json.dumps(trainer_state, indent=1))


def load_training_state(source: Path, names: list[str]) -> tuple[dict, dict[str, dict]]:
    """(model weights, {name: state}) of a complete checkpoint; `names` are the `.pt` files to read."""
    if not (source / STATE_FILE).is_file():
        raise SerError(f"incomplete checkpoint (no {STATE_FILE}): {source}")
    weights = load_file(source / "model.safetensors")
    states = {}
    for name in names:
        path = source / f"{name}.pt"
        if path.is_file():
            states[name] = torch.load(path, map_location="cpu", weights_only=True)
    return weights, states


def trainer_state(source: Path) -> dict:
    return json.loads((source / STATE_FILE).read_text())


def checkpoint_dirs(root: Path) -> list[Path]:
    """Complete checkpoints under `root`, oldest first (temporary and half-written ones are ignored)."""
    if not root.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in root.iterdir()
        if (m := _STEP_DIR.match(p.name)) and (p / STATE_FILE).is_file()
    ]
    return [p for _, p in sorted(found)]


def step_dir(root: Path, step: int) -> Path:
    return root / f"step-{step:07d}"


def prune_checkpoints(root: Path, keep: int) -> None:
    """Deletes all but the newest `keep` complete checkpoints, and any leftover temporary ones."""
    if keep > 0:
        for path in checkpoint_dirs(root)[:-keep]:
            shutil.rmtree(path, ignore_errors=True)
    for path in root.glob(".step-*.tmp") if root.is_dir() else []:
        shutil.rmtree(path, ignore_errors=True)
