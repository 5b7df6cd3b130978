"""Checkpoints on disk: the `best/` model directory and full training states for `--resume`.

Every directory is written atomically (`pipeline.files`), so an interrupted save never leaves a
half-written one where a reader (serving, `--resume`) would pick it up. Weights are safetensors; the
optimizer, scheduler and RNG states are plain tensors and numbers, loaded back with
`torch.load(weights_only=True)`, so no pickled code is ever executed.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..config import Config
from ..errors import ConfigError, SerError, first_line
from ..files import atomic_dir, fresh_temp_dir, publish_dir, recover_dir, remove_dir, temp_sibling

STATE_FILE = "trainer_state.json"  # written last: a checkpoint without it is incomplete
WEIGHTS_FILE = "model.safetensors"
_STEP_DIR = re.compile(r"^step-(\d+)$")


@dataclass
class TrainState:
    """Where training stands; saved as JSON with every full checkpoint."""

    epoch: int = 0  # the epoch in progress (0-based)
    batches_done: int = 0  # batches of that epoch already trained on (by this process)
    step: int = 0  # optimizer steps taken
    best_uar: float = -1.0
    best_step: int = 0
    stale: int = 0  # validations since the last UAR gain
    stopped_early: bool = False
    history: list[dict] = field(default_factory=list)  # one record per validation
    train_log: list[dict] = field(default_factory=list)  # one record per optimizer step


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


def save_checkpoint(accelerator, model, optimizer, scheduler, state: TrainState, cfg: Config) -> None:
    """A full checkpoint under checkpoints/step-N: written into a temporary directory, fsynced, renamed."""
    root = Path(cfg.train.output_dir) / "checkpoints"
    target = step_dir(root, state.step)
    tmp = temp_sibling(target)
    if accelerator.is_main_process:
        fresh_temp_dir(target)
    accelerator.wait_for_everyone()
    save_training_state(tmp, states={f"rng_{accelerator.process_index}": rng_state()})
    model_state = accelerator.get_state_dict(model)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        states = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
        if accelerator.scaler is not None:
            states["scaler"] = accelerator.scaler.state_dict()
        save_training_state(
            tmp,
            model_state=model_state,
            states=states,
            trainer_state={"state": asdict(state), "config": cfg.to_dict()},
        )
        publish_dir(tmp, target)
        prune_checkpoints(root, cfg.train.keep_checkpoints)
    accelerator.wait_for_everyone()


def resume_from_checkpoint(accelerator, model, optimizer, scheduler, cfg: Config) -> TrainState:
    """The state of the newest loadable checkpoint, loaded into model, optimizer, scheduler and RNGs.
    One that cannot be loaded (damaged on disk) is skipped with a warning for the one before it."""
    root = Path(cfg.train.output_dir) / "checkpoints"
    found = checkpoint_dirs(root)
    if not found:
        accelerator.print(f"nothing to resume in {cfg.train.output_dir}: starting from the beginning")
        return TrainState()
    rng = f"rng_{accelerator.process_index}"
    failures = []
    for latest in reversed(found):
        try:
            saved = trainer_state(latest)
            weights, states = load_training_state(
                latest, ["optimizer", "scheduler", "scaler", rng], optional=("scaler", rng)
            )
        except SerError as err:
            failures.append(str(err))
            accelerator.print(f"warning: skipping a checkpoint that cannot be loaded: {err}")
            continue
        for section in ("data", "model"):
            if saved["config"][section] != cfg.to_dict()[section]:
                raise ConfigError(
                    f"cannot resume {latest}: its {section} configuration differs from this run's"
                )
        break
    else:
        raise SerError(f"cannot resume: no loadable checkpoint in {root} ({failures[0]})")
    accelerator.unwrap_model(model).load_state_dict(weights)
    optimizer.load_state_dict(states["optimizer"])
    scheduler.load_state_dict(states["scheduler"])
    if accelerator.scaler is not None and "scaler" in states:
        accelerator.scaler.load_state_dict(states["scaler"])
    if rng in states:
        set_rng_state(states[rng])
    state = TrainState(**saved["state"])
    accelerator.print(f"resuming from {latest} (epoch {state.epoch + 1}, step {state.step})")
    return state
