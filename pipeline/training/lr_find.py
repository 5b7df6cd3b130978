"""`ser lr-find`: the learning-rate range test (Leslie Smith; fastai's `lr_find`).

A fresh model trains for up to `steps` batches while the learning rate grows exponentially from
`start_lr` to `end_lr`; the smoothed loss against the learning rate shows where learning is fastest.
Nothing is kept but the curve: `lr_find.json` and `lr_find.png`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from accelerate import Accelerator

from ..config import Config
from ..errors import ConfigError
from ..files import write_file_atomic
from ..plots import pyplot
from .setup import Setup, set_up, train_step


def suggest_lr(lrs, losses) -> float:
    """The learning rate where the loss falls fastest: the most negative slope of loss against
    log10(lr), ignoring the first tenth and the last twentieth of the points (noise and divergence)."""
    lrs, losses = np.asarray(lrs, dtype=float), np.asarray(losses, dtype=float)
    if len(lrs) < 3:
        raise ConfigError(f"the range test needs at least 3 points, got {len(lrs)}")
    start, end = max(1, len(lrs) // 10), len(lrs) - max(1, len(lrs) // 20)
    if end - start < 3:
        start, end = 0, len(lrs)
    slopes = np.gradient(losses[start:end], np.log10(lrs[start:end]))
    return float(lrs[start + int(np.argmin(slopes))])


def _batches(setup: Setup):
    """The training loader's batches, epoch after epoch (each epoch shuffled and cropped anew)."""
    epoch = 0
    while True:
        setup.set_epoch(epoch)
        yield from setup.train_loader
        epoch += 1


def lr_range_test(
    cfg: Config,
    steps: int = 100,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    beta: float = 0.98,
    diverge: float = 4.0,
) -> dict:
    """Loss against `train.learning_rate` over an exponential sweep; every optimizer group keeps its
    ratio to it (backbone vs head). Stops once the smoothed loss exceeds `diverge` x its minimum."""
    if steps < 10:
        raise ConfigError(f"--steps must be at least 10, got {steps}")
    if not 0 < start_lr < end_lr:
        raise ConfigError(f"need 0 < start_lr < end_lr, got {start_lr} and {end_lr}")
    acc = Accelerator(mixed_precision=cfg.train.accelerator_precision)
    setup = set_up(cfg, cfg.data.fold or 0, acc)
    optimizer = setup.optimizer
    ratios = [group["lr"] / cfg.train.learning_rate for group in optimizer.param_groups]
    setup.model.train()
    lrs, raw, smoothed = [], [], []
    average, best = 0.0, math.inf
    batches = _batches(setup)
    for step in range(steps):
        lr = start_lr * (end_lr / start_lr) ** (step / (steps - 1))
        for group, ratio in zip(optimizer.param_groups, ratios):
            group["lr"] = lr * ratio
        value = train_step(setup, acc, next(batches)).item()
        if not math.isfinite(value):
            break
        average = beta * average + (1 - beta) * value
        smooth = average / (1 - beta ** (step + 1))
        lrs.append(lr)
        raw.append(value)
        smoothed.append(smooth)
        best = min(best, smooth)
        if smooth > diverge * best:
            break
    if len(lrs) < 3:
        raise ConfigError(f"the loss diverged after {len(lrs)} step(s): try a smaller start_lr")
    return {
        "lrs": lrs,
        "losses": smoothed,
        "raw_losses": raw,
        "suggestion": suggest_lr(lrs, smoothed),
        "min_loss_lr_over_10": lrs[int(np.argmin(smoothed))] / 10,
        "start_lr": start_lr,
        "end_lr": end_lr,
        "steps": len(lrs),
        "stopped_early": len(lrs) < steps,
        "group_lr_ratios": ratios,
    }


def plot_lr_find(result: dict, path: str | Path) -> None:
    """Smoothed (and raw) loss against the learning rate, log x-axis, with the suggestions marked."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(result["lrs"], result["raw_losses"], color="tab:blue", alpha=0.25, lw=0.8, label="loss")
    ax.plot(result["lrs"], result["losses"], color="tab:blue", label="smoothed loss")
    lr = result["suggestion"]
    at = result["losses"][result["lrs"].index(lr)]
    ax.plot([lr], [at], "o", color="tab:red", label=f"steepest descent: {lr:.2e}")
    ax.axvline(result["min_loss_lr_over_10"], color="grey", ls="--", lw=0.8, label="min-loss lr / 10")
    low, start = min(result["losses"]), result["losses"][0]  # room for the dip, not the blow-up
    span = max(start - low, 0.05 * abs(start))
    ax.set_ylim(low - 0.2 * span, max(start, low) + span)
    ax.set_xscale("log")
    ax.set(
        xlabel="learning rate (train.learning_rate)", ylabel="cross-entropy", title="learning-rate range test"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def lr_find(cfg: Config, out: str | Path, steps: int = 100, **kwargs) -> dict:
    """Run the range test and write `lr_find.json` and `lr_find.png` to `out`."""
    out = Path(out)
    result = lr_range_test(cfg, steps=steps, **kwargs)
    out.mkdir(parents=True, exist_ok=True)
    write_file_atomic(out / "lr_find.json", json.dumps(result, indent=1))
    plot_lr_find(result, out / "lr_find.png")
    return result
