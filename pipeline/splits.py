"""Speaker-independent train / validation / test splits, deterministic from a seed."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from itertools import zip_longest

SPLITS = ("train", "validation", "test")


@dataclass
class SplitConfig:
    validation: float = 0.15
    test: float = 0.2
    seed: int = 0


def _counts(n: int, cfg: SplitConfig) -> tuple[int, int]:
    """(validation, test) group counts: at least one each, at least one group left for training."""
    if n < 3:
        raise ValueError(f"need at least 3 speakers for a speaker-independent split, found {n}")
    test = max(1, round(n * cfg.test))
    validation = max(1, round(n * cfg.validation))
    while test + validation >= n:
        if validation >= test and validation > 1:
            validation -= 1
        else:
            test -= 1
    return validation, test


def split_by_speaker(records: list[dict], cfg: SplitConfig) -> dict[str, list[dict]]:
    """No speaker in two splits. Speakers are shuffled within gender (when known) and interleaved,
    so held-out sets mix genders."""
    rng = random.Random(cfg.seed)
    by_group: dict[str, list[str]] = defaultdict(list)
    for speaker in sorted({r["speaker"] for r in records}):
        gender = next((r.get("gender") for r in records if r["speaker"] == speaker), None)
        by_group[gender or ""].append(speaker)
    for speakers in by_group.values():
        rng.shuffle(speakers)
    groups = [by_group[g] for g in sorted(by_group)]
    order = [s for row in zip_longest(*groups) for s in row if s is not None]
    n_val, n_test = _counts(len(order), cfg)
    assign = {s: "test" for s in order[:n_test]}
    assign.update({s: "validation" for s in order[n_test : n_test + n_val]})
    out = {name: [] for name in SPLITS}
    for record in records:
        out[assign.get(record["speaker"], "train")].append(record)
    return out


def split_by_clip(records: list[dict], cfg: SplitConfig) -> dict[str, list[dict]]:
    """Label-stratified random split, for corpora without speaker information."""
    rng = random.Random(cfg.seed)
    by_label: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        by_label[record["label"]].append(record)
    out = {name: [] for name in SPLITS}
    for label in sorted(by_label):
        items = by_label[label]
        rng.shuffle(items)
        n_test, n_val = round(len(items) * cfg.test), round(len(items) * cfg.validation)
        out["test"] += items[:n_test]
        out["validation"] += items[n_test : n_test + n_val]
        out["train"] += items[n_test + n_val :]
    return out


def make_splits(records: list[dict], cfg: SplitConfig) -> tuple[dict[str, list[dict]], bool]:
    """(splits, speaker_independent)."""
    if all(r.get("speaker") for r in records) and len({r["speaker"] for r in records}) >= 3:
        return split_by_speaker(records, cfg), True
    return split_by_clip(records, cfg), False
