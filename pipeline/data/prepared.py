"""Reading what `ser prepare` wrote: the table of decoded clips, its folds and feature extractor."""

from __future__ import annotations

import json
from pathlib import Path

import datasets

from ..errors import SerError
from .splits import SPLITS

DATASET_DIR = "dataset"  # metadata/ (save_to_disk) + audio.arrow, joined column-wise when loaded
AUDIO_FILE = "audio.arrow"
FEATURE_EXTRACTOR_DIR = "feature_extractor"


def open_metadata(target: Path) -> datasets.Dataset:
    """The prepared table's metadata columns alone (label, speaker, path, ...): no audio."""
    return datasets.load_from_disk(str(target / "metadata"))


def open_dataset(target: Path) -> datasets.Dataset:
    """The prepared table: metadata columns beside the audio columns, both memory-mapped."""
    metadata = open_metadata(target)
    audio = datasets.Dataset.from_file(str(target / AUDIO_FILE))
    return datasets.concatenate_datasets([metadata, audio], axis=1)


def fold_plan(data_dir: str | Path, fold: int = 0) -> tuple[dict[str, list[int]], list[str]]:
    """({split: row indices of the prepared table} of `fold`, labels) from splits.json."""
    root = Path(data_dir)
    if not (root / "splits.json").is_file():
        raise SerError(f"no prepared data in {root}: run `ser prepare --output-dir {root}` first")
    plan = json.loads((root / "splits.json").read_text())
    if not 0 <= fold < len(plan["folds"]):
        raise SerError(f"{root} has {len(plan['folds'])} fold(s); fold {fold} does not exist")
    return plan["folds"][fold], plan["labels"]


def load_prepared(data_dir: str | Path, fold: int = 0) -> tuple[datasets.DatasetDict, list[str], object]:
    """(train/validation/test of `fold`, labels, feature extractor) written by `prepare`."""
    from transformers import AutoFeatureExtractor

    root = Path(data_dir)
    rows, labels = fold_plan(root, fold)
    dataset = open_dataset(root / DATASET_DIR)
    splits = datasets.DatasetDict({name: dataset.select(rows[name]) for name in SPLITS})
    extractor = AutoFeatureExtractor.from_pretrained(root / FEATURE_EXTRACTOR_DIR)
    return splits, labels, extractor


def fold_count(data_dir: str | Path) -> int:
    """How many folds `prepare` wrote (1 for a plain train/validation/test split)."""
    path = Path(data_dir) / "splits.json"
    if not path.is_file():
        raise SerError(f"no prepared data in {data_dir}: run `ser prepare --output-dir {data_dir}` first")
    return len(json.loads(path.read_text())["folds"])
