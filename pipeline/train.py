"""The custom training loop (Accelerate): the same code on CPU, one GPU or many (`accelerate launch`).

Validation UAR picks the best checkpoint (`best/`), full training states under `checkpoints/` let
`--resume` continue an interrupted run to exactly the metrics an uninterrupted run reaches.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator, PartialState
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from .batching import LengthGroupedBatches, make_loader
from .checkpoint import (
    checkpoint_dirs,
    fresh_temp_dir,
    load_training_state,
    prune_checkpoints,
    publish_dir,
    recover_checkpoints,
    recover_dir,
    rng_state,
    save_model_dir,
    save_training_state,
    set_rng_state,
    step_dir,
    temp_sibling,
    trainer_state,
    write_file_atomic,
)
from .config import Config
from .errors import ConfigError, SerError
from .features import fold_count, load_prepared
from .inference import at_precision, autocast
from .metrics import classification_metrics
from .model import build_feature_extractor, build_model, load_checkpoint, model_labels
from .model_card import write_model_card
from .optim import build_optimizer, build_scheduler, class_weights
from .plots import plot_confusion_matrix, plot_curves

TRAINERS = ("accelerate", "hf")
OnEvaluate = Callable[[int, dict], None]  # (step, validation record); may raise to stop a trial


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


@torch.no_grad()
def predict_loader(model, loader, accelerator: Accelerator) -> tuple[np.ndarray, np.ndarray, float]:
    """(true ids, predicted ids, mean loss) over every sample exactly once, across processes."""
    model.eval()
    trues, preds, losses = [], [], []
    for batch in loader:
        labels = batch.pop("labels")
        logits = model(**batch).logits.float()
        loss = F.cross_entropy(logits, labels, reduction="none")
        labels, logits, loss = accelerator.gather_for_metrics((labels, logits, loss))
        trues.append(labels.cpu())
        preds.append(logits.argmax(-1).cpu())
        losses.append(loss.cpu())
    return torch.cat(trues).numpy(), torch.cat(preds).numpy(), float(torch.cat(losses).mean())


def _check_extractor(data_extractor, cfg: Config) -> None:
    model_extractor = build_feature_extractor(cfg.model)
    for key in ("sampling_rate", "do_normalize", "return_attention_mask"):
        if getattr(model_extractor, key, None) != getattr(data_extractor, key, None):
            raise ConfigError(
                f"the data was prepared for another feature extractor ({key} differs): "
                f"run `ser prepare --backbone {cfg.model.backbone or ''}` again"
            )


def load_fold(cfg: Config, fold: int):
    """(splits, labels, extractor) of a fold, checked against the model configuration."""
    dataset, labels, extractor = load_prepared(cfg.data.path, fold)
    _check_extractor(extractor, cfg)
    if len(dataset["train"]) == 0 or len(dataset["validation"]) == 0:
        raise SerError("the prepared data has an empty train or validation split")
    return dataset, labels, extractor


def _tracker_config(cfg: Config) -> dict:
    """The configuration flattened to scalars, as TensorBoard's hparams want it."""
    flat = {}
    for section, values in cfg.to_dict().items():
        for key, value in values.items():
            ok = isinstance(value, (int, float, str, bool))
            flat[f"{section}.{key}"] = value if ok else json.dumps(value)
    return flat


def _save_training_state(accelerator, model, optimizer, scheduler, state: TrainState, cfg: Config) -> None:
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


def _resume(accelerator, model, optimizer, scheduler, cfg: Config) -> TrainState:
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


class _Run:
    """One fold's training: the prepared objects and the validation/checkpoint bookkeeping."""

    def __init__(self, cfg: Config, fold: int, on_evaluate: OnEvaluate | None):
        self.cfg, self.fold, self.on_evaluate = cfg, fold, on_evaluate
        self.out = Path(cfg.train.output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.accelerator = Accelerator(
            mixed_precision=cfg.train.mixed_precision,
            gradient_accumulation_steps=cfg.train.gradient_accumulation_steps,
            log_with=cfg.train.report_to or None,
            project_dir=self.out,
        )
        if self.accelerator.is_main_process:  # repair what a crash in the middle of a save left
            recover_dir(self.out / "best")
            recover_checkpoints(self.out / "checkpoints")
        self.accelerator.wait_for_everyone()
        set_seed(cfg.train.seed)
        self.dataset, self.labels, self.extractor = load_fold(cfg, fold)
        model = build_model(cfg.model, self.labels)
        self.parameters = sum(p.numel() for p in model.parameters())
        train_loader = make_loader(self.dataset["train"], self.extractor, self.labels, cfg, train=True)
        self.sampler, self.collator = train_loader.batch_sampler, train_loader.collate_fn
        val_loader = make_loader(self.dataset["validation"], self.extractor, self.labels, cfg, train=False)
        optimizer = build_optimizer(model, cfg.train)
        self.model, self.optimizer, self.train_loader, self.val_loader = self.accelerator.prepare(
            model, optimizer, train_loader, val_loader
        )
        self.steps_per_epoch = math.ceil(len(self.train_loader) / cfg.train.gradient_accumulation_steps)
        self.total_steps = cfg.train.epochs * self.steps_per_epoch
        self.scheduler = build_scheduler(self.optimizer.optimizer, cfg.train, self.total_steps)
        weights = class_weights(self.dataset["train"]["label"], self.labels, cfg.train.class_weights)
        self.weights = None if weights is None else weights.to(self.accelerator.device)

    def padding(self) -> dict:
        """Padding share of an epoch's batches: length-grouped (ours) and random (the usual)."""
        max_len = self.collator.max_len
        random = LengthGroupedBatches(
            self.sampler.lengths, self.sampler.batch_size, shuffle=True, group=False
        )
        return {
            "padding_fraction": round(self.sampler.padding_fraction(max_len), 4),
            "padding_fraction_random_batches": round(random.padding_fraction(max_len), 4),
        }

    def validate(self, state: TrainState) -> None:
        """Validation metrics, the best checkpoint, early stopping and a full-state checkpoint."""
        acc = self.accelerator
        y_true, y_pred, val_loss = predict_loader(self.model, self.val_loader, acc)
        val = classification_metrics(y_true, y_pred, self.labels)
        since = state.history[-1]["step"] if state.history else 0
        recent = [r["loss"] for r in state.train_log if r["step"] > since]
        record = {
            "step": state.step,
            "epoch": round(state.step / self.steps_per_epoch, 3),
            "train_loss": float(np.mean(recent)) if recent else float("nan"),
            "val_loss": val_loss,
            "val_accuracy": val["accuracy"],
            "val_uar": val["uar"],
            "val_macro_f1": val["macro_f1"],
            "val_samples": val["samples"],
        }
        state.history.append(record)
        acc.log({k: v for k, v in record.items() if k.startswith("val_")}, step=state.step)
        acc.print(
            f"step {state.step} (epoch {record['epoch']:g}): train loss {record['train_loss']:.4f} · "
            f"val loss {val_loss:.4f} · val acc {val['accuracy']:.3f} · val UAR {val['uar']:.3f}"
        )
        if val["uar"] > state.best_uar:
            state.best_uar, state.best_step, state.stale = val["uar"], state.step, 0
            if acc.is_main_process:
                save_model_dir(acc.unwrap_model(self.model), self.extractor, self.out / "best")
            acc.wait_for_everyone()
        else:
            state.stale += 1
            patience = self.cfg.train.early_stopping_patience
            if patience and state.stale >= patience:
                state.stopped_early = True
                acc.print(f"early stopping: no validation UAR gain in {state.stale} validations")
        _save_training_state(acc, self.model, self.optimizer, self.scheduler, state, self.cfg)
        if self.on_evaluate:
            self.on_evaluate(state.step, record)
        self.model.train()

    def fit(self, state: TrainState) -> TrainState:
        """Trains from `state` to the end (or early stop); validation as configured."""
        acc, cfg = self.accelerator, self.cfg.train
        bar = tqdm(
            total=self.total_steps, initial=state.step, desc="training", disable=not acc.is_local_main_process
        )
        self.model.train()
        while state.epoch < cfg.epochs and not state.stopped_early:
            self.sampler.set_epoch(state.epoch)
            self.collator.set_epoch(state.epoch)
            loader = acc.skip_first_batches(self.train_loader, state.batches_done)
            losses = []
            for batch in loader:
                with acc.accumulate(self.model):
                    labels = batch.pop("labels")
                    logits = self.model(**batch).logits
                    loss = F.cross_entropy(logits.float(), labels, weight=self.weights)
                    acc.backward(loss)
                    if acc.sync_gradients:
                        acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                    self.optimizer.step()
                    self.optimizer.zero_grad()
                state.batches_done += 1
                losses.append(loss.item())
                if not acc.sync_gradients:
                    continue
                if not self.optimizer.step_was_skipped:
                    self.scheduler.step()
                state.step += 1
                lr = self.scheduler.get_last_lr()[-1]
                state.train_log.append({"step": state.step, "loss": float(np.mean(losses)), "lr": lr})
                acc.log({"train_loss": state.train_log[-1]["loss"], "lr": lr}, step=state.step)
                losses = []
                bar.update(1)
                bar.set_postfix(loss=f"{state.train_log[-1]['loss']:.3f}")
                epoch_done = state.batches_done == len(self.train_loader)
                if epoch_done:
                    state.epoch, state.batches_done = state.epoch + 1, 0
                # One checkpoint per step, after its validation: one written before it would let
                # --resume continue past a validation that never happened.
                if (state.step % cfg.eval_every == 0) if cfg.eval_every else epoch_done:
                    self.validate(state)
                elif cfg.save_every and state.step % cfg.save_every == 0:
                    _save_training_state(acc, self.model, self.optimizer, self.scheduler, state, self.cfg)
                if state.stopped_early:
                    break
        if not state.history or state.history[-1]["step"] != state.step:
            self.validate(state)
        bar.close()
        return state

    def finish(self, state: TrainState) -> dict:
        """Test metrics of `best/`, metrics.json, plots and the model card."""
        acc = self.accelerator
        acc.wait_for_everyone()
        results = {
            "fold": self.fold,
            "trainer": "accelerate",
            "parameters": self.parameters,
            "best_step": state.best_step,
            "best_val_uar": state.best_uar,
            "stopped_early": state.stopped_early,
            **self.padding(),
            "history": state.history,
            "config": self.cfg.to_dict(),
        }
        results.update(
            evaluate_best(self.out / "best", self.dataset, self.extractor, self.labels, self.cfg, acc)
        )
        if acc.is_main_process:
            write_results(self.out, results, state.train_log, self.cfg, "custom Accelerate loop")
        acc.end_training()
        return results


def evaluate_best(best_dir: Path, dataset, extractor, labels: list[str], cfg: Config, accelerator) -> dict:
    """{split: metrics} of the saved best checkpoint on validation and test, through `evaluate`."""
    from .emotion_metric import evaluate_predictions  # imports `evaluate` (slow): final report only

    model = accelerator.prepare(load_checkpoint(best_dir))
    results = {}
    for split in ("validation", "test"):
        if len(dataset[split]):
            loader = accelerator.prepare(make_loader(dataset[split], extractor, labels, cfg, train=False))
            y_true, y_pred, _ = predict_loader(model, loader, accelerator)
            results[split] = evaluate_predictions(y_true, y_pred, labels)
    return results


def write_results(out: Path, results: dict, train_log: list[dict], cfg: Config, trainer: str) -> None:
    """metrics.json, curves.png, confusion_matrix.png, and in best/: metrics, matrix and model card."""
    write_file_atomic(out / "metrics.json", json.dumps({**results, "train_log": train_log}, indent=1))
    plot_curves(train_log, results["history"], out / "curves.png")
    if "test" in results:
        plot_confusion_matrix(results["test"], out / "confusion_matrix.png")
        shutil.copy(out / "confusion_matrix.png", out / "best" / "confusion_matrix.png")
        write_file_atomic(out / "best" / "metrics.json", json.dumps(results["test"], indent=2))
        write_model_card(out / "best", cfg, results, trainer)


def train_fold(
    cfg: Config, fold: int = 0, resume: bool = False, on_evaluate: OnEvaluate | None = None
) -> dict:
    """Fine-tune on one fold, keep the best checkpoint by validation UAR, evaluate it on the test split."""
    run = _Run(cfg, fold, on_evaluate)
    acc = run.accelerator
    state = TrainState()
    if resume:
        state = _resume(acc, run.model, run.optimizer, run.scheduler, cfg)
    acc.init_trackers("ser", config=_tracker_config(cfg))
    pad = run.padding()
    acc.print(
        f"{len(run.dataset['train'])} training clips, {run.total_steps} steps; padding is "
        f"{pad['padding_fraction']:.1%} of the samples (random batches would pad "
        f"{pad['padding_fraction_random_batches']:.1%})"
    )
    if cfg.train.sanity_report and not state.step:
        from .sanity import sanity_report

        sanity_report(run)
    return run.finish(run.fit(state))


def train(cfg: Config, resume: bool = False, on_evaluate: OnEvaluate | None = None) -> dict:
    """Train the fold `data.fold`, or every fold of the prepared data (`run/fold<i>/`) and report the
    mean and spread of their test metrics in `run/cv_metrics.json`."""
    if cfg.train.trainer not in TRAINERS:
        raise ConfigError(f"train.trainer must be one of {', '.join(TRAINERS)}, got {cfg.train.trainer!r}")
    if cfg.train.trainer == "hf":
        from .hf_trainer import train_fold_with_trainer as fit
    else:
        fit = train_fold
    folds = [cfg.data.fold] if cfg.data.fold is not None else list(range(fold_count(cfg.data.path)))
    if len(folds) == 1:
        return fit(cfg, folds[0], resume=resume, on_evaluate=on_evaluate)
    out = Path(cfg.train.output_dir)
    runs = [
        fit(replace(cfg, train=replace(cfg.train, output_dir=str(out / f"fold{f}"))), f, resume=resume)
        for f in folds
    ]
    summary = {
        key: {"mean": float(np.mean(values)), "std": float(np.std(values)), "folds": values}
        for key in ("accuracy", "uar", "macro_f1")
        for values in [[run["test"][key] for run in runs]]
    }
    if PartialState().is_main_process:
        write_file_atomic(out / "cv_metrics.json", json.dumps(summary, indent=2))
    return {"folds": runs, "cross_validation": summary}


def evaluate_checkpoint(
    checkpoint: str | Path,
    data_dir: str | Path,
    split: str = "test",
    fold: int = 0,
    batch_size: int = 16,
    precision: str = "fp32",
) -> dict:
    """Metrics of a saved checkpoint at an inference precision (see `PRECISIONS`) on one split (of one
    fold) of prepared data; the precision used is in the answer."""
    from .emotion_metric import evaluate_predictions

    dataset, labels, extractor = load_prepared(data_dir, fold)
    if split not in dataset:
        raise SerError(f"no split {split!r} in {data_dir}; have {', '.join(dataset)}")
    model = load_checkpoint(checkpoint)
    model, precision = at_precision(model, precision, PartialState().device)
    if model_labels(model) != labels:
        raise SerError(f"checkpoint labels {model_labels(model)} differ from the data's {labels}")
    cfg = Config()
    cfg.train.batch_size = batch_size
    accelerator = Accelerator()
    loader = make_loader(dataset[split], extractor, labels, cfg, train=False)
    model, loader = accelerator.prepare(model, loader)
    with autocast(precision, accelerator.device):
        y_true, y_pred, _ = predict_loader(model, loader, accelerator)
    return {**evaluate_predictions(y_true, y_pred, labels), "precision": precision}
