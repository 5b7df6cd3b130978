"""Debugging aids: a data sanity report before the first step, and `--overfit-batches`."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter

import numpy as np
import torch
from accelerate import Accelerator

from ..config import Config
from ..errors import SerError
from ..files import write_file_atomic
from .setup import Setup, set_up, train_step, training_loss

OVERFIT_LOSS = 0.05  # "near zero": the check passes this close to the loss's floor


def _gradient_norms(model) -> dict[str, float]:
    """L2 norm of the gradients per top-level module (feature encoder, encoder, projector, ...)."""
    squares: dict[str, float] = {}
    for name, param in model.named_parameters():
        if param.grad is not None:
            parts = name.split(".")
            group = ".".join(parts[:2] if parts[0] == model.base_model_prefix else parts[:1])
            squares[group] = squares.get(group, 0.0) + float(param.grad.float().pow(2).sum())
    return {group: math.sqrt(total) for group, total in squares.items()}


def sanity_report(setup: Setup, acc: Accelerator) -> dict:
    """Shapes, value ranges, padding and label balance of one training batch, the initial loss
    against its chance level ln(C), and that batch's gradient norms; printed and saved as sanity.json."""
    model = setup.model
    batch = next(iter(setup.train_loader))
    labels = batch.pop("labels")
    name = setup.extractor.model_input_names[0]  # input_values (waveform) or input_features
    values = batch[name].float()
    mask = batch.get("attention_mask")
    model.train()
    loss = training_loss(setup, model(**batch).logits, labels)
    acc.backward(loss)
    report = {
        "batch": {key: list(tensor.shape) for key, tensor in batch.items()},
        name: {
            "min": float(values.min()),
            "max": float(values.max()),
            "mean": float(values.mean()),
            "std": float(values.std()),
            "finite": bool(torch.isfinite(values).all()),
        },
        "padding_fraction": float(1 - mask.float().mean()) if mask is not None else None,
        "labels_in_batch": dict(Counter(setup.labels[i] for i in labels.tolist())),
        "label_balance": {
            split: dict(sorted(Counter(setup.dataset[split]["label"]).items())) for split in setup.dataset
        },
        "initial_loss": float(loss),
        "chance_loss": math.log(len(setup.labels)),
        "gradient_norms": _gradient_norms(acc.unwrap_model(model)),
    }
    setup.optimizer.zero_grad()
    if acc.is_main_process:
        acc.print(json.dumps(report, indent=2))
        write_file_atomic(setup.out / "sanity.json", json.dumps(report, indent=2))
    return report


def loss_floor(smoothing: float, classes: int) -> float:
    """The least training loss: the entropy of the smoothed targets (0 without smoothing)."""
    if smoothing == 0:
        return 0.0
    high, low = 1 - smoothing + smoothing / classes, smoothing / classes
    return -(high * math.log(high) + (classes - 1) * low * math.log(low))


def overfit_batches(cfg: Config, batches: int, max_steps: int = 300) -> dict:
    """Trains on the same `batches` training batches until the loss is near its floor (or
    `max_steps`): a model that cannot memorise a handful of clips has a bug, not a tuning problem."""
    acc = Accelerator(mixed_precision=cfg.train.accelerator_precision)
    setup = set_up(cfg, cfg.data.fold or 0, acc)
    target = loss_floor(cfg.train.label_smoothing, len(setup.labels)) + OVERFIT_LOSS
    fixed = list(itertools.islice(setup.train_loader, batches))  # cropped once, then the same every time
    setup.model.train()
    losses = []
    for step in range(max_steps):
        losses.append(float(train_step(setup, acc, fixed[step % len(fixed)])))
        if step % len(fixed) == len(fixed) - 1:
            epoch_loss = float(np.mean(losses[-len(fixed) :]))
            print(f"step {step + 1}: loss {epoch_loss:.4f}", flush=True)
            if epoch_loss < target:
                break
    final = float(np.mean(losses[-len(fixed) :]))
    result = {"batches": len(fixed), "steps": len(losses), "initial_loss": losses[0], "final_loss": final}
    if final >= target:
        raise SerError(
            f"could not overfit {len(fixed)} batch(es): loss {losses[0]:.3f} -> {final:.3f} after "
            f"{len(losses)} steps (expected < {target:.3f}); check labels, learning rate and the model"
        )
    return result
