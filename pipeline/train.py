"""The custom training loop (Accelerate): the same code on CPU, one GPU or many (`accelerate launch`)."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

from .config import Config
from .errors import ConfigError, SerError
from .features import fold_count, load_prepared
from .metrics import classification_metrics, plot_confusion_matrix
from .model import build_feature_extractor, build_model, load_checkpoint, model_labels


class Collator:
    """Crops clips (randomly in training, centred otherwise) and pads them into a batch."""

    def __init__(self, extractor, labels: list[str], max_seconds: float, train: bool, seed: int = 0):
        self.extractor = extractor
        self.label_ids = {label: i for i, label in enumerate(labels)}
        self.max_len = int(max_seconds * extractor.sampling_rate)
        self.train = train
        self.rng = np.random.default_rng(seed)

    def _crop(self, wave: np.ndarray) -> np.ndarray:
        extra = wave.size - self.max_len
        if extra <= 0:
            return wave
        start = int(self.rng.integers(extra + 1)) if self.train else extra // 2
        return wave[start : start + self.max_len]

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        waves = [self._crop(np.asarray(r["input_values"], dtype=np.float32)) for r in rows]
        batch = self.extractor.pad(
            {"input_values": waves},
            padding=True,
            return_attention_mask=bool(self.extractor.return_attention_mask),
            return_tensors="pt",
        )
        batch["labels"] = torch.tensor([self.label_ids[str(r["label"])] for r in rows])
        return dict(batch)


def _loader(ds, extractor, labels: list[str], cfg: Config, train: bool) -> DataLoader:
    ds = ds.with_format("numpy", columns=["input_values", "label"])
    seconds = cfg.data.max_train_seconds if train else cfg.data.max_eval_seconds
    return DataLoader(
        ds,
        batch_size=cfg.train.batch_size,
        shuffle=train,
        collate_fn=Collator(extractor, labels, seconds, train, cfg.train.seed),
        num_workers=cfg.train.num_workers,
    )


def _optimizer(model, cfg: Config) -> torch.optim.Optimizer:
    """AdamW with one learning rate for the pretrained backbone and one for the new head."""
    backbone = {id(p) for p in getattr(model, model.base_model_prefix).parameters()}
    groups: dict[tuple[bool, bool], list] = {}
    for param in model.parameters():
        if param.requires_grad:
            groups.setdefault((id(param) in backbone, param.ndim >= 2), []).append(param)
    head_lr = cfg.train.head_learning_rate or cfg.train.learning_rate
    return torch.optim.AdamW(
        [
            {
                "params": params,
                "lr": cfg.train.learning_rate if is_backbone else head_lr,
                "weight_decay": cfg.train.weight_decay if decays else 0.0,
            }
            for (is_backbone, decays), params in groups.items()
        ]
    )


@torch.no_grad()
def predict_loader(
    model, loader: DataLoader, accelerator: Accelerator
) -> tuple[np.ndarray, np.ndarray, float]:
    """(true ids, predicted ids, mean loss) over every sample exactly once, across processes."""
    model.eval()
    trues, preds, losses = [], [], []
    for batch in loader:
        out = model(**batch)
        labels, logits = accelerator.gather_for_metrics((batch["labels"], out.logits))
        trues.append(labels.cpu())
        preds.append(logits.argmax(-1).cpu())
        losses.append(accelerator.gather(out.loss.detach()[None]).mean().item())
    return torch.cat(trues).numpy(), torch.cat(preds).numpy(), float(np.mean(losses))


def _save_checkpoint(model, extractor, accelerator: Accelerator, target: Path) -> None:
    """Write to a temporary directory, then swap it in: a crash never leaves a half-written `best/`."""
    tmp = target.with_name(target.name + ".tmp")
    old = target.with_name(target.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    accelerator.unwrap_model(model).save_pretrained(tmp, safe_serialization=True)
    extractor.save_pretrained(tmp)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _check_extractor(data_extractor, cfg: Config) -> None:
    model_extractor = build_feature_extractor(cfg.model)
    for key in ("sampling_rate", "do_normalize", "return_attention_mask"):
        if getattr(model_extractor, key, None) != getattr(data_extractor, key, None):
            raise ConfigError(
                f"the data was prepared for another feature extractor ({key} differs): "
                f"run `ser prepare --backbone {cfg.model.backbone or ''}` again"
            )


def train_fold(cfg: Config, fold: int = 0) -> dict:
    """Fine-tune on one fold, keep the best checkpoint by validation UAR, evaluate it on the test split."""
    accelerator = Accelerator(
        mixed_precision=cfg.train.mixed_precision,
        gradient_accumulation_steps=cfg.train.gradient_accumulation_steps,
    )
    set_seed(cfg.train.seed)
    out = Path(cfg.train.output_dir)
    dataset, labels, extractor = load_prepared(cfg.data.path, fold)
    _check_extractor(extractor, cfg)
    if len(dataset["train"]) == 0 or len(dataset["validation"]) == 0:
        raise SerError("the prepared data has an empty train or validation split")
    model = build_model(cfg.model, labels)
    train_loader = _loader(dataset["train"], extractor, labels, cfg, train=True)
    val_loader = _loader(dataset["validation"], extractor, labels, cfg, train=False)
    optimizer = _optimizer(model, cfg)
    steps = cfg.train.epochs * math.ceil(len(train_loader) / cfg.train.gradient_accumulation_steps)
    scheduler = get_scheduler(
        "linear", optimizer, num_warmup_steps=int(cfg.train.warmup_ratio * steps), num_training_steps=steps
    )
    model, optimizer, train_loader, val_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, val_loader, scheduler
    )
    history, best_uar, best_epoch = [], -1.0, 0
    bar = tqdm(total=steps, desc="training", disable=not accelerator.is_local_main_process)
    for epoch in range(1, cfg.train.epochs + 1):
        model.train()
        epoch_loss = []
        for batch in train_loader:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.train.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            epoch_loss.append(loss.item())
            if accelerator.sync_gradients:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
        y_true, y_pred, val_loss = predict_loader(model, val_loader, accelerator)
        val = classification_metrics(y_true, y_pred, labels)
        history.append(
            {
                "epoch": epoch,
                "train_loss": float(np.mean(epoch_loss)),
                "val_loss": val_loss,
                "val_accuracy": val["accuracy"],
                "val_uar": val["uar"],
            }
        )
        accelerator.print(
            f"epoch {epoch}: train loss {history[-1]['train_loss']:.4f} · val loss {val_loss:.4f} "
            f"· val acc {val['accuracy']:.3f} · val UAR {val['uar']:.3f}"
        )
        if val["uar"] > best_uar:
            best_uar, best_epoch = val["uar"], epoch
            if accelerator.is_main_process:
                _save_checkpoint(model, extractor, accelerator, out / "best")
            accelerator.wait_for_everyone()
        elif cfg.train.early_stopping_patience and epoch - best_epoch >= cfg.train.early_stopping_patience:
            accelerator.print(f"early stopping: no validation UAR gain for {epoch - best_epoch} epochs")
            break
    bar.close()
    accelerator.wait_for_everyone()
    results = {"fold": fold, "best_epoch": best_epoch, "history": history, "config": cfg.to_dict()}
    best = load_checkpoint(out / "best")
    best = accelerator.prepare(best)
    for split in ("validation", "test"):
        if len(dataset[split]):
            loader = accelerator.prepare(_loader(dataset[split], extractor, labels, cfg, train=False))
            y_true, y_pred, _ = predict_loader(best, loader, accelerator)
            results[split] = classification_metrics(y_true, y_pred, labels)
    if accelerator.is_main_process:
        (out / "metrics.json").write_text(json.dumps(results, indent=2))
        if "test" in results:
            plot_confusion_matrix(results["test"], out / "confusion_matrix.png")
            shutil.copy(out / "confusion_matrix.png", out / "best" / "confusion_matrix.png")
            (out / "best" / "metrics.json").write_text(json.dumps(results["test"], indent=2))
    accelerator.end_training()
    return results


def train(cfg: Config) -> dict:
    """Train the fold `data.fold`, or every fold of the prepared data (`run/fold<i>/`) and report the
    mean and spread of their test metrics in `run/cv_metrics.json`."""
    folds = [cfg.data.fold] if cfg.data.fold is not None else list(range(fold_count(cfg.data.path)))
    if len(folds) == 1:
        return train_fold(cfg, folds[0])
    out = Path(cfg.train.output_dir)
    runs = [
        train_fold(replace(cfg, train=replace(cfg.train, output_dir=str(out / f"fold{f}"))), f) for f in folds
    ]
    summary = {
        key: {"mean": float(np.mean(values)), "std": float(np.std(values)), "folds": values}
        for key in ("accuracy", "uar", "macro_f1")
        for values in [[run["test"][key] for run in runs]]
    }
    if PartialState().is_main_process:
        (out / "cv_metrics.json").write_text(json.dumps(summary, indent=2))
    return {"folds": runs, "cross_validation": summary}


def evaluate_checkpoint(
    checkpoint: str | Path, data_dir: str | Path, split: str = "test", fold: int = 0, batch_size: int = 16
) -> dict:
    """Metrics of a saved checkpoint on one split (of one fold) of prepared data."""
    dataset, labels, extractor = load_prepared(data_dir, fold)
    if split not in dataset:
        raise SerError(f"no split {split!r} in {data_dir}; have {', '.join(dataset)}")
    model = load_checkpoint(checkpoint)
    if model_labels(model) != labels:
        raise SerError(f"checkpoint labels {model_labels(model)} differ from the data's {labels}")
    cfg = Config()
    cfg.train.batch_size = batch_size
    accelerator = Accelerator()
    model, loader = accelerator.prepare(model, _loader(dataset[split], extractor, labels, cfg, train=False))
    y_true, y_pred, _ = predict_loader(model, loader, accelerator)
    return classification_metrics(y_true, y_pred, labels)
