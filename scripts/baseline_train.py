"""The straightforward alternative that `bench_train.py` measures our training against: the recipe of
transformers' examples/pytorch/audio-classification/run_audio_classification.py, faithful to its
`main()` and its README flags, with our hyperparameters in place of the example's.

The recipe: a `datasets` `Audio(sampling_rate=16000)` column, decoded and resampled on the fly
(torchcodec + FFmpeg) in every epoch by `set_transform`, the example's random crop and the feature
extractor per batch, `Trainer` padding random batches (`DataCollatorWithPadding`), evaluating and
saving every epoch and loading the best checkpoint at the end, then `trainer.evaluate()`.

What differs from the example, so that only the pipeline differs from ours: the corpus is the train
and validation split of fold 0 of our prepared data (the original audio files, not the prepared
arrays); the model is the wav2vec2 of `cfg.model` with a trainable feature encoder; epochs, batch
size (training and evaluation), learning rate, weight decay, warm-up, linear schedule, max grad norm,
seed, dataloader workers and crop length (`data.max_train_seconds`) are ours; the best checkpoint is
picked by UAR instead of accuracy, and the metrics are scikit-learn's. The Trainer keeps its own
optimizer (fused AdamW).

`example(cfg)` times its `trainer.evaluate` calls itself (`TimedTrainer`) and answers like
`pipeline.training.run.train`: validation metrics, `evaluation_s` and `evaluation_cpu_s`.
`profile_example(cfg)` measures the recipe's data work per epoch (decoding, feature extractor).
Needs `make bench-deps` (FFmpeg, torchcodec).
"""

from __future__ import annotations

import math
import time
from random import randint

import datasets
import numpy as np
import torch
import transformers
from sklearn.metrics import accuracy_score, recall_score

from pipeline.config import Config
from pipeline.data.prepared import load_prepared
from pipeline.model import build_feature_extractor, build_model
from pipeline.training.results import Stopwatch


def example_datasets(cfg: Config) -> tuple[datasets.DatasetDict, list[str]]:
    """Our train/validation split as the example loads a corpus: audio paths (an `Audio` column) + labels."""
    splits, labels, _ = load_prepared(cfg.data.path, cfg.data.fold or 0)
    features = datasets.Features({"audio": datasets.Audio(), "label": datasets.ClassLabel(names=labels)})
    raw = datasets.DatasetDict(
        {
            name: datasets.Dataset.from_dict(
                {"audio": splits[split]["path"], "label": splits[split]["label"]}, features=features
            )
            for name, split in (("train", "train"), ("eval", "validation"))
        }
    )
    return raw, labels


def random_subsample(wav: np.ndarray, max_length: float, sample_rate: int = 16000) -> np.ndarray:
    """The example's random crop (its off-by-one included)."""
    sample_length = int(round(sample_rate * max_length))
    if len(wav) <= sample_length:
        return wav
    random_offset = randint(0, len(wav) - sample_length - 1)
    return wav[random_offset : random_offset + sample_length]


def compute_metrics(eval_pred) -> dict[str, float]:
    predictions = np.argmax(eval_pred.predictions, axis=1)
    return {
        "accuracy": accuracy_score(eval_pred.label_ids, predictions),
        "uar": recall_score(eval_pred.label_ids, predictions, average="macro", zero_division=0),
    }


def example_arguments(cfg: Config, train_clips: int) -> transformers.TrainingArguments:
    """The README's flags, with our hyperparameters in place of the example's."""
    t = cfg.train
    steps = t.epochs * math.ceil(math.ceil(train_clips / t.batch_size) / t.gradient_accumulation_steps)
    return transformers.TrainingArguments(
        output_dir=t.output_dir,
        remove_unused_columns=False,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        lr_scheduler_type="linear",
        warmup_steps=int(t.warmup_ratio * steps),  # as ours rounds it
        max_grad_norm=t.max_grad_norm,
        num_train_epochs=t.epochs,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        dataloader_num_workers=t.num_workers,
        bf16=t.mixed_precision == "bf16",
        fp16=t.mixed_precision == "fp16",
        logging_strategy="steps",
        logging_steps=10,
        eval_strategy="epoch",
        save_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model="uar",
        save_total_limit=3,
        seed=t.seed,
        report_to="none",
        disable_tqdm=True,
    )


class TimedTrainer(transformers.Trainer):
    """The example's `Trainer`, adding the wall and CPU seconds of every `evaluate` call (each epoch's
    and the final one) to `self.stopwatch`; otherwise unchanged."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stopwatch = Stopwatch()

    def evaluate(self, *args, **kwargs):
        with self.stopwatch:
            return super().evaluate(*args, **kwargs)


def example(cfg: Config) -> dict:
    """run_audio_classification.py's main(), from loading the corpus to the final evaluation; answers
    {"validation": metrics of the best checkpoint, "evaluation_s": .., "evaluation_cpu_s": ..}."""
    transformers.set_seed(cfg.train.seed)
    raw, labels = example_datasets(cfg)
    feature_extractor = build_feature_extractor(cfg.model)
    raw = raw.cast_column("audio", datasets.Audio(sampling_rate=feature_extractor.sampling_rate))
    model_input_name = feature_extractor.model_input_names[0]

    def train_transforms(batch):
        wavs = [
            random_subsample(a["array"], cfg.data.max_train_seconds, feature_extractor.sampling_rate)
            for a in batch["audio"]
        ]
        inputs = feature_extractor(wavs, sampling_rate=feature_extractor.sampling_rate)
        return {model_input_name: inputs.get(model_input_name), "labels": list(batch["label"])}

    def val_transforms(batch):
        wavs = [a["array"] for a in batch["audio"]]
        inputs = feature_extractor(wavs, sampling_rate=feature_extractor.sampling_rate)
        return {model_input_name: inputs.get(model_input_name), "labels": list(batch["label"])}

    model = build_model(cfg.model, labels)
    raw["train"].set_transform(train_transforms, output_all_columns=False)
    raw["eval"].set_transform(val_transforms, output_all_columns=False)
    trainer = TimedTrainer(
        model=model,
        args=example_arguments(cfg, len(raw["train"])),
        train_dataset=raw["train"],
        eval_dataset=raw["eval"],
        compute_metrics=compute_metrics,
        processing_class=feature_extractor,
    )
    trainer.train()
    trainer.save_model()
    metrics = trainer.evaluate()
    validation = {key: metrics[f"eval_{key}"] for key in ("accuracy", "uar")}
    return {"validation": validation, **trainer.stopwatch.to_dict()}


# --- where the recipe's training time goes --------------------------------------------------------


def padding_share(lengths: list[int], batch_size: int, epochs: int = 20) -> float:
    """Share of padded samples in random batches (the example's RandomSampler), over a few epochs."""
    lengths, padded, generator = np.asarray(lengths), 0, torch.Generator().manual_seed(0)
    for _ in range(epochs):
        order = torch.randperm(len(lengths), generator=generator).numpy()
        padded += sum(
            b.max() * b.size
            for b in np.array_split(lengths[order], range(batch_size, len(order), batch_size))
        )
    return float(1 - epochs * lengths.sum() / padded)


def profile_example(cfg: Config) -> dict[str, float]:
    """CPU seconds per epoch of the recipe's data work on the train split, in its batches: decoding with
    resampling and downmix (`audio["array"]`), then the feature extractor; and its padding share."""
    raw, _ = example_datasets(cfg)
    extractor = build_feature_extractor(cfg.model)
    sr, bs = extractor.sampling_rate, cfg.train.batch_size
    ds = raw["train"].cast_column("audio", datasets.Audio(sampling_rate=sr))
    ds[0]["audio"]["array"]  # torchcodec's first call

    def decode() -> tuple[float, list[np.ndarray]]:
        start = time.process_time()
        waves = [a["array"] for i in range(0, len(ds), bs) for a in ds[i : i + bs]["audio"]]
        return time.process_time() - start, waves

    decode_s, waves = min((decode() for _ in range(3)), key=lambda timed: timed[0])  # least disturbed
    start = time.process_time()
    for i in range(0, len(waves), bs):
        extractor(waves[i : i + bs], sampling_rate=sr)
    extract_s = time.process_time() - start
    lengths = [min(w.size, int(round(cfg.data.max_train_seconds * sr))) for w in waves]
    return {
        "decode_s": decode_s,
        "extract_s": extract_s,
        "mean_clip_s": float(np.mean(lengths)) / sr,
        "padding": padding_share(lengths, bs),
    }
