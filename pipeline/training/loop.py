"""The custom training loop (Accelerate): the same code on CPU, one GPU or many (`accelerate launch`).

Validation UAR picks the best checkpoint (`best/`), full training states under `checkpoints/` let
`--resume` continue an interrupted run to exactly the metrics an uninterrupted run reaches.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from ..config import Config
from ..files import recover_dir
from ..metrics import classification_metrics
from .batching import LengthGroupedBatches
from .checkpoint import (
    TrainState,
    recover_checkpoints,
    resume_from_checkpoint,
    save_checkpoint,
    save_model_dir,
)
from .optim import build_scheduler
from .results import Stopwatch, complete
from .sanity import sanity_report
from .setup import Setup, loss_of, set_up, train_step

OnEvaluate = Callable[[int, dict], None]  # (step, validation record); may raise to stop a trial


@torch.no_grad()
def predict_loader(model, loader, accelerator: Accelerator) -> tuple[np.ndarray, np.ndarray, float]:
    """(true ids, predicted ids, mean loss) over every sample exactly once, across processes."""
    model.eval()
    trues, preds, losses = [], [], []
    for batch in loader:
        labels = batch.pop("labels")
        logits = model(**batch).logits.float()
        loss = loss_of(logits, labels, reduction="none")
        labels, logits, loss = accelerator.gather_for_metrics((labels, logits, loss))
        trues.append(labels.cpu())
        preds.append(logits.argmax(-1).cpu())
        losses.append(loss.cpu())
    return torch.cat(trues).numpy(), torch.cat(preds).numpy(), float(torch.cat(losses).mean())


def _tracker_config(cfg: Config) -> dict:
    """The configuration flattened to scalars, as TensorBoard's hparams want it."""
    flat = {}
    for section, values in cfg.to_dict().items():
        for key, value in values.items():
            ok = isinstance(value, (int, float, str, bool))
            flat[f"{section}.{key}"] = value if ok else json.dumps(value)
    return flat


class FoldTraining:
    """One fold's training with our loop: the set-up, the schedule, and the validation/checkpoint
    bookkeeping."""

    def __init__(self, cfg: Config, fold: int, on_evaluate: OnEvaluate | None):
        self.cfg, self.fold, self.on_evaluate = cfg, fold, on_evaluate
        self.out = Path(cfg.train.output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.accelerator = acc = Accelerator(
            mixed_precision=cfg.train.accelerator_precision,
            gradient_accumulation_steps=cfg.train.gradient_accumulation_steps,
            log_with=cfg.train.report_to or None,
            project_dir=self.out,
        )
        if acc.is_main_process:  # repair what a crash in the middle of a save left
            recover_dir(self.out / "best")
            recover_checkpoints(self.out / "checkpoints")
        acc.wait_for_everyone()
        self.setup: Setup = set_up(cfg, fold, acc)
        self.steps_per_epoch = math.ceil(len(self.setup.train_loader) / cfg.train.gradient_accumulation_steps)
        self.epochs = cfg.train.epochs_for(len(self.setup.train_loader))
        self.total_steps = self.epochs * self.steps_per_epoch
        self.scheduler = build_scheduler(self.setup.optimizer.optimizer, cfg.train, self.total_steps)
        self.evaluation = Stopwatch()  # time spent validating and testing, reported with the results

    def padding(self) -> dict:
        """Padding share of an epoch's batches: length-grouped (ours) and random (the usual)."""
        sampler, collator = self.setup.epoch_parts
        random = LengthGroupedBatches(sampler.lengths, sampler.batch_size, shuffle=True, group=False)
        return {
            "padding_fraction": round(sampler.padding_fraction(collator.max_len), 4),
            "padding_fraction_random_batches": round(random.padding_fraction(collator.max_len), 4),
        }

    def _checkpoint(self, state: TrainState) -> None:
        setup = self.setup
        save_checkpoint(self.accelerator, setup.model, setup.optimizer, self.scheduler, state, self.cfg)

    def validate(self, state: TrainState) -> None:
        """Validation metrics, the best checkpoint, early stopping and a full-state checkpoint."""
        acc, setup = self.accelerator, self.setup
        with self.evaluation:
            y_true, y_pred, val_loss = predict_loader(setup.model, setup.val_loader, acc)
        val = classification_metrics(y_true, y_pred, setup.labels)
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
        improved = val["uar"] > state.best_uar
        if improved:
            state.best_uar, state.stale = val["uar"], 0
        else:
            state.stale += 1
            patience = self.cfg.train.early_stopping_patience
            if patience and state.stale >= patience:
                state.stopped_early = True
                acc.print(f"early stopping: no validation UAR gain in {state.stale} validations")
        if improved if self.cfg.train.keep == "best" else state.step >= self.total_steps:
            state.best_step = state.step
            if acc.is_main_process:
                save_model_dir(acc.unwrap_model(setup.model), setup.extractor, self.out / "best")
            acc.wait_for_everyone()
        self._checkpoint(state)
        if self.on_evaluate:
            self.on_evaluate(state.step, record)
        setup.model.train()

    def fit(self, state: TrainState) -> TrainState:
        """Trains from `state` to the end (or early stop); validation as configured."""
        acc, cfg, setup = self.accelerator, self.cfg.train, self.setup
        model, optimizer = setup.model, setup.optimizer
        bar = tqdm(
            total=self.total_steps, initial=state.step, desc="training", disable=not acc.is_local_main_process
        )
        model.train()
        while state.epoch < self.epochs and not state.stopped_early:
            setup.set_epoch(state.epoch)
            loader = acc.skip_first_batches(setup.train_loader, state.batches_done)
            losses = []
            for batch in loader:
                with acc.accumulate(model):
                    loss = train_step(setup, acc, batch)
                state.batches_done += 1
                losses.append(loss.item())
                if not acc.sync_gradients:
                    continue
                if not optimizer.step_was_skipped:
                    self.scheduler.step()
                state.step += 1
                lr = self.scheduler.get_last_lr()[-1]
                state.train_log.append({"step": state.step, "loss": float(np.mean(losses)), "lr": lr})
                acc.log({"train_loss": state.train_log[-1]["loss"], "lr": lr}, step=state.step)
                losses = []
                bar.update(1)
                bar.set_postfix(loss=f"{state.train_log[-1]['loss']:.3f}")
                epoch_done = state.batches_done == len(setup.train_loader)
                if epoch_done:
                    state.epoch, state.batches_done = state.epoch + 1, 0
                # One checkpoint per step, after its validation: one written before it would let
                # --resume continue past a validation that never happened.
                if (state.step % cfg.eval_every == 0) if cfg.eval_every else epoch_done:
                    self.validate(state)
                elif cfg.save_every and state.step % cfg.save_every == 0:
                    self._checkpoint(state)
                if state.stopped_early:
                    break
        if not state.history or state.history[-1]["step"] != state.step:
            self.validate(state)
        bar.close()
        return state

    def finish(self, state: TrainState) -> dict:
        """Validation and test metrics of `best/`, metrics.json, plots and the model card."""
        acc, setup = self.accelerator, self.setup
        acc.wait_for_everyone()
        results = {
            "fold": self.fold,
            "trainer": "accelerate",
            "processes": acc.num_processes,
            "parameters": setup.parameters,
            "best_step": state.best_step,
            "stopped_early": state.stopped_early,
            **self.padding(),
            "history": state.history,
            "config": self.cfg.to_dict(),
        }
        results = complete(results, setup, acc, self.evaluation, state.train_log, "custom Accelerate loop")
        # Every collective finished before `end_training` destroys the process group: gloo's thread,
        # freeing a last broadcast's tensors, needs the GIL the thread freeing the group holds (a
        # 2-process run hung so at exit once, under load).
        acc.wait_for_everyone()
        acc.end_training()
        return results


def train_fold(
    cfg: Config, fold: int = 0, resume: bool = False, on_evaluate: OnEvaluate | None = None
) -> dict:
    """Fine-tune on one fold, keep the best checkpoint by validation UAR, evaluate it on the test split."""
    run = FoldTraining(cfg, fold, on_evaluate)
    acc, setup = run.accelerator, run.setup
    state = TrainState()
    if resume:
        state = resume_from_checkpoint(acc, setup.model, setup.optimizer, run.scheduler, cfg)
    acc.init_trackers("ser", config=_tracker_config(cfg))
    pad = run.padding()
    acc.print(
        f"{len(setup.dataset['train'])} training clips, {run.epochs} epochs of {run.steps_per_epoch} "
        f"steps; padding is "
        f"{pad['padding_fraction']:.1%} of the samples (random batches would pad "
        f"{pad['padding_fraction_random_batches']:.1%})"
    )
    if cfg.train.sanity_report and not state.step:
        sanity_report(setup, acc)
    return run.finish(run.fit(state))
