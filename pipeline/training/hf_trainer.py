"""The `transformers.Trainer` path (`ser train --trainer hf`): our model, data, optimizer, schedule, loss
and metrics, driven by `Trainer` instead of our Accelerate loop.

Trainer's own `checkpoint-N/` directories serve `--resume`: weights in safetensors, the optimizer,
scheduler and RNG states loaded back with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
from accelerate import PartialState
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from ..config import Config
from ..metrics import classification_metrics
from .checkpoint import rng_state, save_model_dir, set_rng_state
from .loop import OnEvaluate
from .optim import build_scheduler
from .results import Stopwatch, complete
from .setup import Setup, loss_of, set_up, training_loss


class _SerTrainer(Trainer):
    """Trainer with our set-up (loaders with length-grouped batches and seeded crops, optimizer, loss
    weights), schedule and loss; it times its evaluations.

    Overrides Trainer's hooks as transformers >=5.0,<6 defines them (checked with 5.24)."""

    loss_is_scaled_for_ga = False  # a per-batch mean: Trainer divides it by the accumulation steps

    def __init__(self, setup: Setup, **kwargs):
        super().__init__(optimizers=(setup.optimizer, None), **kwargs)
        self.setup, self.stopwatch = setup, Stopwatch()

    def get_train_dataloader(self):
        return self.accelerator.prepare(self.setup.train_loader)

    @functools.cached_property
    def _val_loader(self):
        return self.accelerator.prepare(self.setup.val_loader)

    def get_eval_dataloader(self, eval_dataset=None):
        """The validation loader (prepared once): the one dataset evaluated during training."""
        return self._val_loader

    def evaluate(self, *args, **kwargs):
        with self.stopwatch:
            return super().evaluate(*args, **kwargs)

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None:
            optimizer = optimizer or self.optimizer
            self.lr_scheduler = build_scheduler(optimizer, self.setup.cfg.train, num_training_steps)
        return self.lr_scheduler

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Our loop's training loss in training, the plain one for validation."""
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        if model.training:
            loss = training_loss(self.setup, outputs.logits, labels)
        else:
            loss = loss_of(outputs.logits, labels)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict, start_time=None) -> None:
        if "loss" in logs:  # the head's learning rate after the step, as our loop records it
            logs["lr"] = self.lr_scheduler.get_last_lr()[-1]
        super().log(logs, start_time)


def _records(log_history: list[dict]) -> tuple[list[dict], list[dict]]:
    """(train_log, history) in our loop's format, from Trainer's log history."""
    train_log, history, recent = [], [], []
    for entry in log_history:
        if "loss" in entry:
            train_log.append({"step": entry["step"], "loss": entry["loss"], "lr": entry["lr"]})
            recent.append(entry["loss"])
        elif "eval_uar" in entry:
            history.append(
                {
                    "step": entry["step"],
                    "epoch": round(entry["epoch"], 3),
                    "train_loss": float(np.mean(recent)) if recent else float("nan"),
                    **{f"val_{k}": entry[f"eval_{k}"] for k in ("loss", "accuracy", "uar", "macro_f1")},
                    "val_samples": int(entry["eval_samples"]),
                }
            )
            recent = []
    return train_log, history


class _Hooks(TrainerCallback):
    """Re-seeds batch order and crops every epoch; reports each validation like our loop."""

    def __init__(self, trainer: _SerTrainer, on_evaluate: OnEvaluate | None):
        self.trainer, self.report = trainer, on_evaluate

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.trainer.setup.set_epoch(int(state.epoch))

    def on_evaluate(self, args, state, control, **kwargs):
        record = _records(state.log_history)[1][-1]
        if state.is_world_process_zero:
            print(
                f"step {record['step']} (epoch {record['epoch']:g}): train loss {record['train_loss']:.4f} · "
                f"val loss {record['val_loss']:.4f} · val acc {record['val_accuracy']:.3f} · "
                f"val UAR {record['val_uar']:.3f}"
            )
        if self.report:
            self.report(record["step"], record)


def _compute_metrics(labels: list[str]):
    def compute(prediction) -> dict:
        found = classification_metrics(prediction.label_ids, prediction.predictions.argmax(-1), labels)
        return {k: found[k] for k in ("accuracy", "uar", "macro_f1", "samples")}

    return compute


def train_fold_with_trainer(
    cfg: Config, fold: int = 0, resume: bool = False, on_evaluate: OnEvaluate | None = None
) -> dict:
    """`train_fold` through `transformers.Trainer`: same data, model, optimizer, schedule, loss, metrics
    and outputs (best/, metrics.json, plots, model card)."""
    tc, out = cfg.train, Path(cfg.train.output_dir)
    setup = set_up(cfg, fold)  # unprepared: the Trainer prepares the model, optimizer and loaders
    dataset, labels, extractor = setup.dataset, setup.labels, setup.extractor
    strategy = {"strategy": "steps", "steps": tc.eval_every} if tc.eval_every else {"strategy": "epoch"}
    args = TrainingArguments(
        output_dir=str(out),
        num_train_epochs=tc.epochs_for(math.ceil(len(setup.train_loader) / PartialState().num_processes)),
        per_device_train_batch_size=tc.batch_size,
        per_device_eval_batch_size=tc.batch_size,
        gradient_accumulation_steps=tc.gradient_accumulation_steps,
        max_grad_norm=tc.max_grad_norm,
        seed=tc.seed,
        bf16=tc.mixed_precision == "bf16",
        fp16=tc.mixed_precision == "fp16",
        **{f"eval_{k}": v for k, v in strategy.items()},
        **{f"save_{k}": v for k, v in strategy.items()},
        save_total_limit=tc.keep_checkpoints or None,
        load_best_model_at_end=tc.keep == "best",
        metric_for_best_model="uar",
        greater_is_better=True,
        restore_callback_states_from_checkpoint=True,  # early-stopping patience survives --resume
        logging_steps=1,
        report_to=tc.report_to or "none",
        remove_unused_columns=False,
    )
    rng = rng_state()  # Trainer re-seeds on creation: keep our loop's stream (dropout, LayerDrop)
    trainer = _SerTrainer(
        setup,
        model=setup.model,
        args=args,
        train_dataset=dataset["train"],
        eval_dataset=dataset["validation"],
        processing_class=extractor,
        compute_metrics=_compute_metrics(labels),
    )
    set_rng_state(rng)
    trainer.add_callback(_Hooks(trainer, on_evaluate))
    early = EarlyStoppingCallback(tc.early_stopping_patience) if tc.early_stopping_patience else None
    if early:
        trainer.add_callback(early)
    checkpoint = get_last_checkpoint(str(out)) if resume and out.is_dir() else None
    if resume and checkpoint:
        trainer.accelerator.print(f"resuming from {checkpoint}")
    elif resume:
        trainer.accelerator.print(f"nothing to resume in {out}: starting from the beginning")
    trainer.train(resume_from_checkpoint=checkpoint)

    validated = _records(trainer.state.log_history)[1]
    if tc.keep == "last" and (not validated or validated[-1]["step"] != trainer.state.global_step):
        trainer.evaluate()  # the kept final weights, validated as our loop does
    acc = trainer.accelerator
    if trainer.is_world_process_zero():
        save_model_dir(trainer.model, extractor, out / "best")
    acc.wait_for_everyone()
    train_log, history = _records(trainer.state.log_history)
    results = {
        "fold": fold,
        "trainer": "hf",
        "parameters": setup.parameters,
        "best_step": history[-1]["step"] if tc.keep == "last" else trainer.state.best_global_step,
        "stopped_early": bool(early and early.early_stopping_patience_counter >= tc.early_stopping_patience),
        "history": history,
        "config": cfg.to_dict(),
    }
    return complete(results, setup, acc, trainer.stopwatch, train_log, "transformers.Trainer")
