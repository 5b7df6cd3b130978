"""The functionals (`pipeline.functionals`) of every prepared clip, computed once per feature set
(with `datasets.map`, in parallel with `num_proc`) and kept beside the prepared data in
`functionals/<set>.npy`: every later fold, seed, baseline and training run reads them. A new
`ser prepare` of other files or settings makes them stale (its `inputs` fingerprint). Runs that
need them at once (`ser train --jobs`) compute them once: the others wait on a file lock."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import datasets
import numpy as np
import torch
from filelock import FileLock

from ..files import write_file_atomic
from ..functionals import functionals
from .prepared import AUDIO_FILE, DATASET_DIR

FUNCTIONALS_DIR = "functionals"
DEFAULT_FUNCTIONALS = "compare"  # computed by `ser prepare`: the recipe's head and the main baseline


def _batch(batch: dict, rank: int | None, feature_set: str, sampling_rate: int) -> dict:
    if rank is not None:  # a forked worker: one core each (torch's threads, and `functionals`')
        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = "1"
    return {"functionals": list(functionals(batch["input_values"], sampling_rate, feature_set))}


def table_functionals(data_dir: str | Path, feature_set: str, num_proc: int = 1) -> np.ndarray:
    """[clips of the prepared table, features]: `feature_set`'s functionals of every clip, in the
    table's row order (splits.json's indices), from the cache or computed into it."""
    root = Path(data_dir)
    inputs = json.loads((root / "summary.json").read_text())["inputs"]
    target, stamp = (
        root / FUNCTIONALS_DIR / f"{feature_set}.npy",
        root / FUNCTIONALS_DIR / f"{feature_set}.json",
    )
    if _current(target, stamp, inputs):
        return np.load(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(target.parent / f".{feature_set}.lock"):  # one computes, the others (runs at once) wait
        if _current(target, stamp, inputs):
            return np.load(target)
        return _compute(root, feature_set, num_proc, target, stamp, inputs)


def _current(target: Path, stamp: Path, inputs: str) -> bool:
    return target.is_file() and stamp.is_file() and json.loads(stamp.read_text()).get("inputs") == inputs


def _compute(
    root: Path, feature_set: str, num_proc: int, target: Path, stamp: Path, inputs: str
) -> np.ndarray:
    sampling_rate = json.loads((root / "summary.json").read_text())["sampling_rate"]
    # The audio table alone: the prepared table joins it to the metadata column-wise, which
    # `datasets` cannot shard between processes.
    audio = datasets.Dataset.from_file(str(root / DATASET_DIR / AUDIO_FILE)).select_columns(["input_values"])
    work = root / FUNCTIONALS_DIR / f".{feature_set}-parts"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        rows = audio.map(
            _batch,
            batched=True,
            batch_size=16,
            with_rank=True,
            num_proc=num_proc if num_proc > 1 and len(audio) >= 8 * num_proc else None,
            fn_kwargs={"feature_set": feature_set, "sampling_rate": sampling_rate},
            remove_columns=["input_values"],
            features=datasets.Features({"functionals": datasets.List(datasets.Value("float32"))}),
            cache_file_name=str(work / "part.arrow"),
            desc=f"{feature_set} functionals of {len(audio)} clips",
        )
        table = np.asarray(rows.with_format("numpy")["functionals"], dtype=np.float32)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    buffer = io.BytesIO()
    np.save(buffer, table)
    write_file_atomic(target, buffer.getvalue())
    write_file_atomic(stamp, json.dumps({"inputs": inputs, "shape": list(table.shape)}))
    return table
