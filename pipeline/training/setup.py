"""What every way of training shares, written once: seed -> data -> model -> loaders -> optimizer ->
Accelerate -> class weights, and the loss. Our loop, the Trainer path, `--overfit-batches`,
`ser lr-find` and `ser tune` all start from `set_up`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader

from ..config import Config
from ..data.prepared import load_prepared
from ..errors import ConfigError, SerError
from ..model import build_feature_extractor, build_model
from .batching import make_loader
from .optim import build_optimizer, class_weights


def loss_of(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None, **kwargs):
    """Cross-entropy in fp32 (mixed precision computes logits in half); `weights` and `kwargs` go
    to `F.cross_entropy`. Validation's loss as it is; training's through `training_loss`."""
    return F.cross_entropy(logits.float(), labels, weight=weights, **kwargs)


def training_loss(setup: Setup, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The loss that training minimises: class-weighted (`train.class_weights`), with smoothed
    targets (`train.label_smoothing`); validation scores the plain `loss_of`."""
    weights = None if setup.weights is None else setup.weights.to(labels.device)
    return loss_of(logits, labels, weights, label_smoothing=setup.cfg.train.label_smoothing)


def _check_extractor(data_extractor, cfg: Config) -> None:
    model_extractor = build_feature_extractor(cfg.model)
    keys = ("sampling_rate", "do_normalize", "return_attention_mask")
    differs = [
        key for key in keys if getattr(model_extractor, key, None) != getattr(data_extractor, key, None)
    ]
    if type(model_extractor) is not type(data_extractor):
        differs.insert(0, f"{type(data_extractor).__name__}, not {type(model_extractor).__name__}")
    if differs:
        model = (
            f"--backbone {cfg.model.backbone}"
            if cfg.model.backbone
            else f"--architecture {cfg.model.architecture}"
        )
        raise ConfigError(
            f"the data was prepared for another feature extractor ({differs[0]}): "
            f"run `ser prepare {model}` again"
        )


def load_fold(cfg: Config, fold: int):
    """(splits, labels, extractor) of a fold, checked against the model configuration."""
    dataset, labels, extractor = load_prepared(cfg.data.path, fold)
    _check_extractor(extractor, cfg)
    if len(dataset["train"]) == 0 or len(dataset["validation"]) == 0:
        raise SerError("the prepared data has an empty train or validation split")
    return dataset, labels, extractor


@dataclass
class Setup:
    """A fold ready to train: data, model, loaders, optimizer and loss weights (prepared for the
    accelerator when one was given; the Trainer path prepares them itself)."""

    cfg: Config
    fold: int
    dataset: Any  # DatasetDict: train, validation, test
    labels: list[str]
    extractor: Any
    model: torch.nn.Module
    train_loader: DataLoader
    val_loader: DataLoader
    optimizer: torch.optim.Optimizer
    weights: torch.Tensor | None  # class weights of the training loss
    parameters: int
    epoch_parts: tuple  # the training batch sampler and collator, re-seeded every epoch

    @property
    def out(self) -> Path:
        return Path(self.cfg.train.output_dir)

    def set_epoch(self, epoch: int) -> None:
        """Batch order and crops of `epoch` (a pure function of seed and epoch: replayable)."""
        for part in self.epoch_parts:
            part.set_epoch(epoch)


def set_up(cfg: Config, fold: int, accelerator: Accelerator | None = None) -> Setup:
    """Seed, then the fold's data, a fresh model, the loaders and the optimizer, in that order (the
    order fixes the random initialisation); prepared by `accelerator` when given."""
    set_seed(cfg.train.seed)
    dataset, labels, extractor = load_fold(cfg, fold)
    model = build_model(cfg.model, labels)
    parameters = sum(p.numel() for p in model.parameters())
    train_loader = make_loader(dataset["train"], extractor, labels, cfg, train=True)
    val_loader = make_loader(dataset["validation"], extractor, labels, cfg, train=False)
    epoch_parts = (train_loader.batch_sampler, train_loader.collate_fn)
    optimizer = build_optimizer(model, cfg.train)
    weights = class_weights(dataset["train"]["label"], labels, cfg.train.class_weights)
    if accelerator is not None:
        model, optimizer, train_loader, val_loader = accelerator.prepare(
            model, optimizer, train_loader, val_loader
        )
        weights = None if weights is None else weights.to(accelerator.device)
    return Setup(
        cfg,
        fold,
        dataset,
        labels,
        extractor,
        model,
        train_loader,
        val_loader,
        optimizer,
        weights,
        parameters,
        epoch_parts,
    )


def train_step(setup: Setup, accelerator: Accelerator, batch: dict) -> torch.Tensor:
    """Loss, backward, clipping and an optimizer step on one batch; its loss. Inside
    `accelerator.accumulate`, the step happens only where the accumulated gradients sync."""
    batch = dict(batch)
    labels = batch.pop("labels")
    loss = training_loss(setup, setup.model(**batch).logits, labels)
    accelerator.backward(loss)
    if accelerator.sync_gradients:
        accelerator.clip_grad_norm_(setup.model.parameters(), setup.cfg.train.max_grad_norm)
    setup.optimizer.step()
    setup.optimizer.zero_grad()
    return loss
