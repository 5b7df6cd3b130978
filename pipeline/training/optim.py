"""Optimizer, learning-rate schedule and loss weights, shared by our loop and the Trainer path."""

from __future__ import annotations

import math
from collections import Counter

import torch
from torch.optim.lr_scheduler import LambdaLR

from ..config import SCHEDULES, TrainConfig
from ..errors import ConfigError


def build_optimizer(model, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with one learning rate for the pretrained backbone and one for the new head; no weight
    decay on biases and norms. Groups are tagged `backbone` for the freezing schedule."""
    backbone = {id(p) for p in getattr(model, model.base_model_prefix).parameters()}
    groups: dict[tuple[bool, bool], list] = {}
    for param in model.parameters():
        if param.requires_grad:
            groups.setdefault((id(param) in backbone, param.ndim >= 2), []).append(param)
    head_lr = cfg.head_learning_rate or cfg.learning_rate
    return torch.optim.AdamW(
        [
            {
                "params": params,
                "lr": cfg.learning_rate if is_backbone else head_lr,
                "weight_decay": cfg.weight_decay if decays else 0.0,
                "backbone": is_backbone,
            }
            for (is_backbone, decays), params in groups.items()
        ]
    )


def build_scheduler(optimizer, cfg: TrainConfig, total_steps: int) -> LambdaLR:
    """Linear warm-up, then linear or cosine decay to zero (or constant). Backbone groups get a zero
    learning rate for the first `freeze_backbone_steps` steps: the head learns first, and unlike
    toggling `requires_grad` this is safe under DDP."""
    if cfg.scheduler not in SCHEDULES:
        raise ConfigError(f"train.scheduler must be one of {', '.join(SCHEDULES)}, got {cfg.scheduler!r}")
    warmup = int(cfg.warmup_ratio * total_steps)

    def decay(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if cfg.scheduler == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        if cfg.scheduler == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        return max(0.0, 1 - progress)

    def frozen_then_decay(step: int) -> float:
        return 0.0 if step < cfg.freeze_backbone_steps else decay(step)

    return LambdaLR(
        optimizer, [frozen_then_decay if g.get("backbone") else decay for g in optimizer.param_groups]
    )


def class_weights(labels_of_rows: list[str], labels: list[str], mode: str) -> torch.Tensor | None:
    """Inverse-frequency weights (`balanced`, as scikit-learn defines them) or None."""
    if mode == "none":
        return None
    if mode != "balanced":
        raise ConfigError(f"train.class_weights must be none or balanced, got {mode!r}")
    counts = Counter(labels_of_rows)
    missing = [label for label in labels if not counts[label]]
    if missing:
        raise ConfigError(f"no training clips for {', '.join(missing)}: cannot weight those classes")
    total = sum(counts.values())
    return torch.tensor([total / (len(labels) * counts[label]) for label in labels], dtype=torch.float32)
