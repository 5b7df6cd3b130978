"""`ser prepare`: records -> decoded, resampled, normalised `datasets.DatasetDict` on disk + summary."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import datasets
import numpy as np

from .audio import load_audio
from .config import ModelConfig
from .corpora import read_corpus, select_labels
from .errors import SerError
from .model import build_feature_extractor
from .splits import SPLITS, SplitConfig, make_splits

FEATURE_EXTRACTOR_DIR = "feature_extractor"
DECODED_COLUMNS = {
    "input_values": datasets.List(datasets.Value("float32")),
    "duration": datasets.Value("float32"),
    "error": datasets.Value("string"),
}
DATASET_DIR = "dataset"


@dataclass
class PrepareConfig:
    corpus: str = "auto"
    labels: list[str] = field(default_factory=list)  # keep only these (empty: all)
    min_seconds: float = 0.2
    max_seconds: float = 30.0  # longer clips keep their first max_seconds
    max_bad_fraction: float = 0.2  # above this share of unreadable files, stop
    num_proc: int = 1
    backbone: str | None = None  # whose feature extractor to apply; None = the small default model
    splits: SplitConfig = field(default_factory=SplitConfig)


def _decode_batch(batch: dict, extractor, cfg: PrepareConfig) -> dict:
    """Decode, downmix, resample, crop and normalise one batch; failures become an `error`."""
    sr = extractor.sampling_rate
    waves, errors = [], []
    for path in batch["path"]:
        try:
            wave = load_audio(path, sr)[: int(cfg.max_seconds * sr)]
            if wave.size < cfg.min_seconds * sr:
                raise SerError(f"shorter than {cfg.min_seconds:g} s")
            if not np.any(wave):
                raise SerError("silent (all zeros)")
            waves.append(wave)
            errors.append(None)
        except SerError as err:
            waves.append(np.zeros(0, dtype=np.float32))
            errors.append(str(err).removeprefix(f"{path}: "))
    ok = [w for w, e in zip(waves, errors) if e is None]
    normalised = iter(extractor(ok, sampling_rate=sr).input_values if ok else [])
    return {
        "input_values": [next(normalised) if e is None else w for w, e in zip(waves, errors)],
        "duration": [w.size / sr for w in waves],
        "error": errors,
    }


def _split_summary(ds: datasets.Dataset, labels: list[str]) -> dict:
    speakers = sorted({s for s in ds["speaker"] if s})
    counts = Counter(labels[i] for i in ds["label"])
    return {
        "clips": len(ds),
        "speakers": len(speakers),
        "speaker_ids": speakers,
        "hours": round(sum(ds["duration"]) / 3600, 4),
        "labels": {label: counts.get(label, 0) for label in labels},
    }


def prepare(data_dir: str | Path, out_dir: str | Path, cfg: PrepareConfig) -> dict:
    """Read, split and preprocess a corpus into `out/dataset`, `out/feature_extractor`, `out/summary.json`."""
    out = Path(out_dir)
    reader, records = read_corpus(cfg.corpus, data_dir)
    records = select_labels(records, cfg.labels)
    labels = sorted({r["label"] for r in records})
    splits, speaker_independent = make_splits(records, cfg.splits)
    extractor = build_feature_extractor(ModelConfig(backbone=cfg.backbone))
    columns = sorted({k for r in records for k in r})
    features = datasets.Features(
        {k: datasets.Value("string") for k in columns if k != "label"}
        | {"label": datasets.ClassLabel(names=labels)}
    )
    decoded, skipped = {}, []
    for name in SPLITS:
        rows = [{k: r.get(k) for k in columns} for r in splits[name]]
        ds = datasets.Dataset.from_list(rows, features=features)
        ds = ds.map(
            _decode_batch,
            batched=True,
            batch_size=32,
            num_proc=cfg.num_proc if len(ds) >= 64 else None,
            fn_kwargs={"extractor": extractor, "cfg": cfg},
            features=datasets.Features({**features, **DECODED_COLUMNS}),
            desc=f"preparing {name}",
        )
        bad = ds.filter(lambda e: e is not None, input_columns="error")
        skipped += [{"path": p, "reason": e} for p, e in zip(bad["path"], bad["error"])]
        decoded[name] = ds.filter(lambda e: e is None, input_columns="error").remove_columns("error")
    if len(skipped) > cfg.max_bad_fraction * len(records):
        raise SerError(
            f"{len(skipped)} of {len(records)} files could not be used (limit {cfg.max_bad_fraction:.0%}); "
            f"first: {skipped[0]['path']}: {skipped[0]['reason']}"
        )
    dataset = datasets.DatasetDict(decoded)
    dataset.save_to_disk(str(out / DATASET_DIR))
    extractor.save_pretrained(out / FEATURE_EXTRACTOR_DIR)
    summary = {
        "corpus": reader,
        "data_dir": str(Path(data_dir).resolve()),
        "labels": labels,
        "sampling_rate": extractor.sampling_rate,
        "speaker_independent": speaker_independent,
        "config": asdict(cfg),
        "splits": {name: _split_summary(ds, labels) for name, ds in dataset.items()},
        "skipped": skipped,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def load_prepared(data_dir: str | Path) -> tuple[datasets.DatasetDict, list[str], object]:
    """(dataset, labels, feature extractor) written by `prepare`."""
    from transformers import AutoFeatureExtractor

    root = Path(data_dir)
    if not (root / DATASET_DIR).is_dir():
        raise SerError(f"no prepared data in {root}: run `ser prepare --out {root}` first")
    dataset = datasets.load_from_disk(str(root / DATASET_DIR))
    labels = dataset["train"].features["label"].names
    extractor = AutoFeatureExtractor.from_pretrained(root / FEATURE_EXTRACTOR_DIR)
    return dataset, labels, extractor
