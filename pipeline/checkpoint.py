"""Checkpoints on disk: the `best/` model directory and full training states for `--resume`.

Every write goes to a temporary sibling (`.NAME.tmp`), whose files are fsynced before it is renamed
into place, so an interrupted save never leaves a half-written directory where a reader (serving,
`--resume`) would pick it up. Replacing an existing directory takes two renames (the old one aside
to `.NAME.old`, the new one in); a crash between them leaves the old one there, and `recover_dir`
(run before every write and when training starts) puts it back. Weights are safetensors; the
optimizer, scheduler and RNG states are plain tensors and numbers, loaded back with
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

from .errors import SerError, first_line

STATE_FILE = "trainer_state.json"  # written last: a checkpoint without it is incomplete
WEIGHTS_FILE = "model.safetensors"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def temp_sibling(target: Path, kind: str = "tmp") -> Path:
    """`.NAME.tmp` (being written), `.NAME.old` (being replaced) or `.NAME.del` (being deleted)."""
    target = Path(target)
    return target.with_name(f".{target.name}.{kind}")


def _fsync(path: Path) -> None:
    """Flushes a file, or a directory's entries (where the file system allows it), to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        if not os.path.isdir(path):  # some file systems cannot fsync a directory: nothing to do there
            raise
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """Flushes every file under `root`, then the directories (deepest first), to the disk."""
    dirs = []
    for folder, _, files in os.walk(root):
        dirs.append(folder)
        for name in files:
            _fsync(Path(folder, name))
    for folder in reversed(dirs):
        _fsync(Path(folder))


def recover_dir(target: Path) -> None:
    """Repairs what a crash in the middle of replacing `target` left: if `target` is gone but its
    previous version (`.NAME.old`, complete) is there, it is put back; leftover temporary, old and
    half-deleted siblings are removed."""
    target = Path(target)
    old = temp_sibling(target, "old")
    if old.is_dir() and not target.exists():
        os.rename(old, target)
    for kind in ("old", "tmp", "del"):
        shutil.rmtree(temp_sibling(target, kind), ignore_errors=True)


def fresh_temp_dir(target: Path) -> Path:
    """An empty `.NAME.tmp` beside `target` (after repairing what an earlier crash left)."""
    recover_dir(target)
    tmp = temp_sibling(target)
    tmp.mkdir(parents=True)
    return tmp


def publish_dir(tmp: Path, target: Path) -> None:
    """Makes the fully written directory `tmp` the new `target`: fsync, then rename(s)."""
    tmp, target = Path(tmp), Path(target)
    _fsync_tree(tmp)
    old = temp_sibling(target, "old")
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.rename(target, old)
    os.rename(tmp, target)
    _fsync(target.parent)
    shutil.rmtree(old, ignore_errors=True)


def remove_dir(target: Path) -> None:
    """Deletes `target` so that no reader ever sees it half deleted: renamed aside first."""
    gone = temp_sibling(target, "del")
    shutil.rmtree(gone, ignore_errors=True)
    os.rename(target, gone)
    shutil.rmtree(gone, ignore_errors=True)


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yields an empty temporary directory that replaces `target` once the block has finished (and is
    discarded if the block raises)."""
    target = Path(target)
    tmp = fresh_temp_dir(target)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish_dir(tmp, target)


def write_file_atomic(path: Path, data: bytes | str) -> None:
    """Writes a file through a temporary name, so readers see the old or the new content, never half."""
    path = Path(path)
    tmp = temp_sibling(path)
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync(path.parent)


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
    """One process's part of a full checkpoint, written into the temporary directory `target`: every
    process saves its RNG state (in `states`), the main process the model weights, the
    optimizer/scheduler states and, last, the JSON trainer state (see `publish_dir`)."""
    target.mkdir(parents=True, exist_ok=True)
    if model_state is not None:
        save_file({k: v.detach().cpu().contiguous() for k, v in model_state.items()}, target / WEIGHTS_FILE)
    for name, state in (states or {}).items():
        torch.save(state, target / f"{name}.pt")
    if trainer_state is not None:
        (target / STATE_FILE).write_text(json.dumps(trainer_state, indent=1))


def load_training_state(
    source: Path, names: list[str], optional: tuple[str, ...] = ()
) -> tuple[dict, dict[str, dict]]:
    """(model weights, {name: state}) of a complete checkpoint; `names` are the `.pt` files to read
    (those in `optional` may be absent). Raises SerError for a missing, corrupt or non-tensor file: the
    states are plain tensors and numbers, so `torch.load(weights_only=True)` refuses anything else
    (pickled objects, code) without running it."""
    source = Path(source)
    if not (source / STATE_FILE).is_file():
        raise SerError(f"incomplete checkpoint (no {STATE_FILE}): {source}")
    try:
        weights = load_file(source / WEIGHTS_FILE)
    except Exception as err:  # missing or corrupt: safetensors raises its own error types
        raise SerError(f"cannot load {source / WEIGHTS_FILE}: {first_line(err)}") from err
    states = {}
    for name in names:
        path = source / f"{name}.pt"
        if not path.is_file():
            if name in optional:
                continue
            raise SerError(f"incomplete checkpoint (no {path.name}): {source}")
        try:
            states[name] = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # pickle.UnpicklingError for anything but tensors, RuntimeError if corrupt
            raise SerError(
                f"cannot load {path} (only plain tensors are accepted): {first_line(err)}"
            ) from err
    return weights, states


def trainer_state(source: Path) -> dict:
    try:
        return json.loads((Path(source) / STATE_FILE).read_text())
    except (OSError, ValueError) as err:
        raise SerError(f"cannot read {Path(source) / STATE_FILE}: {first_line(err)}") from err


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


def recover_checkpoints(root: Path) -> None:
    """`recover_dir` for every checkpoint a crash may have left in the middle of a write or deletion."""
    if root.is_dir():
        names = {p.name.removeprefix(".").rsplit(".", 1)[0] for p in root.glob(".step-*.*")}
        for name in sorted(names):
            recover_dir(root / name)


def prune_checkpoints(root: Path, keep: int) -> None:
    """Deletes all but the newest `keep` complete checkpoints, and any leftover temporary ones."""
    if keep > 0:
        for path in checkpoint_dirs(root)[:-keep]:
            remove_dir(path)
    recover_checkpoints(root)
