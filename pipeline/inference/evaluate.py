"""`ser evaluate`: metrics of a checkpoint on prepared data, through `Predictor`, the path of
`ser predict`, the service and the demo: whole clips (no crop), padded only where the model allows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..commands import INFERENCE_BATCH
from ..data.prepared import load_prepared
from ..errors import SerError
from ..metrics import evaluate_predictions
from .backends import resolve_device
from .predictor import Predictor


def split_logits(predictor: Predictor, split, batch_size: int = INFERENCE_BATCH) -> np.ndarray:
    """(clips, classes) the answer's logits of every clip of a prepared split, computed in batches
    of clips of similar length (a clip's answer does not depend on its batch: `Predictor.logits`)."""
    audio = split.with_format("numpy", columns=["input_values"])
    order = np.argsort(np.asarray(split["duration"]), kind="stable")
    logits = np.empty((len(split), len(predictor.labels)), dtype=np.float32)
    for start in tqdm(range(0, len(split), batch_size), desc="evaluating", leave=False):
        rows = order[start : start + batch_size]
        logits[rows] = predictor.logits([audio[int(i)]["input_values"] for i in rows])
    return logits


def split_targets(split, labels: list[str]) -> np.ndarray:
    """The class id of every clip of a prepared split."""
    index = {label: i for i, label in enumerate(labels)}
    return np.array([index[label] for label in split["label"]], dtype=np.int64)


def evaluate_splits(
    predictor: Predictor,
    dataset,
    labels: list[str],
    splits=("validation", "test"),
    batch_size: int = INFERENCE_BATCH,
) -> dict:
    """{split: metrics} of `predictor` on the non-empty `splits` of a prepared dataset."""
    return {
        name: evaluate_predictions(
            split_targets(dataset[name], labels),
            split_logits(predictor, dataset[name], batch_size).argmax(-1),
            labels,
        )
        for name in splits
        if len(dataset[name])
    }


def trained_fold(checkpoint: str | Path) -> int:
    """The fold a checkpoint was trained on, as its run's metrics.json (beside best/) says; 0 where
    it does not say."""
    try:
        fold = json.loads((Path(checkpoint).resolve().parent / "metrics.json").read_text()).get("fold")
    except (OSError, ValueError, AttributeError):
        fold = None
    return fold if isinstance(fold, int) else 0


def evaluate_checkpoint(
    checkpoint: str | Path,
    data_dir: str | Path,
    split: str = "test",
    fold: int | None = None,
    batch_size: int = INFERENCE_BATCH,
    precision: str = "auto",
    backend: str = "auto",
    device: str = "auto",
) -> dict:
    """Metrics of a saved checkpoint at an inference precision and backend (see `PRECISIONS`,
    `BACKENDS`) on one split of one fold of prepared data (None: the fold it was trained on), on the
    GPU when there is one (`device` auto, torch); the fold, backend and precision used are in the
    answer."""
    fold = trained_fold(checkpoint) if fold is None else fold
    dataset, labels, extractor = load_prepared(data_dir, fold)
    if split not in dataset:
        raise SerError(f"no split {split!r} in {data_dir}; have {', '.join(dataset)}")
    if not len(dataset[split]):
        raise SerError(f"the {split} split of {data_dir} is empty")
    device = resolve_device(device, backend)
    predictor = Predictor.from_pretrained(checkpoint, device=device, precision=precision, backend=backend)
    if predictor.labels != labels:
        raise SerError(f"checkpoint labels {predictor.labels} differ from the data's {labels}")
    if predictor.sampling_rate != extractor.sampling_rate:
        raise SerError(
            f"the checkpoint expects {predictor.sampling_rate} Hz, "
            f"the data is at {extractor.sampling_rate} Hz"
        )
    metrics = evaluate_splits(predictor, dataset, labels, (split,), batch_size)[split]
    return {**metrics, "fold": fold, "backend": predictor.backend, "precision": predictor.precision}
