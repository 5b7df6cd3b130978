"""`ser prepare`: corpus records -> decoded, resampled, normalised `datasets` table + splits + summary.

Decoding is the expensive stage, so its results are cached per file under `OUT/cache/<settings>/`
(one Arrow part per run that decoded something):
running again with the same decoding settings decodes nothing, and a changed corpus or label
subset decodes only the files not seen before. Changing only the splits re-splits and rewrites the
(cheap) outputs. The clips' openSMILE functionals are computed here too, once (`functionals/`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path

import datasets
import numpy as np
import torch
import torchaudio.functional as AF

from ..config import ModelConfig
from ..errors import SerError
from ..files import write_file_atomic
from ..model import build_feature_extractor, takes_waveform
from .audio import load_audio, trim_silence
from .audit import HARMLESS, audit_records, check_bad_fraction, decode_problem, problem_summary, report_lines
from .corpora import read_corpora
from .corpus_files import SYNTHETIC_MARK
from .functionals_cache import DEFAULT_FUNCTIONALS, table_functionals
from .prepare_config import DecodeConfig, PrepareConfig
from .prepared import AUDIO_FILE, DATASET_DIR, FEATURE_EXTRACTOR_DIR, open_dataset
from .report import plot_summary, summary_lines
from .splits import SPLITS, make_splits

CACHE_DIR = "cache"
DECODED_COLUMNS = datasets.Features(
    {
        "key": datasets.Value("string"),
        "input_values": datasets.List(datasets.Value("float32")),
        "duration": datasets.Value("float32"),
        "error": datasets.Value("string"),
    }
)


def _file_key(path: str) -> str:
    """Identifies a file's content cheaply: path, size and modification time."""
    try:
        stat = Path(path).stat()
    except OSError:
        return f"{path}|missing"
    return f"{path}|{stat.st_size}|{stat.st_mtime_ns}"


def torch_resample(wave: np.ndarray, orig: int, new: int) -> np.ndarray:
    """torchaudio's resampling: the prepared data the measured figures were trained on, bitwise
    (inference resamples with its numpy equivalent, equal to float rounding)."""
    return AF.resample(torch.from_numpy(wave), orig, new).numpy()


def _decode_one(path: str, sr: int, cfg: DecodeConfig) -> np.ndarray:
    wave = load_audio(path, sr, resampler=torch_resample)
    if cfg.trim_silence:
        wave = trim_silence(wave, sr, cfg.trim_top_db)
    if wave.size < cfg.min_seconds * sr:
        raise SerError(f"shorter than {cfg.min_seconds:g} s")
    if wave.size > cfg.max_seconds * sr:
        if cfg.long_clips == "skip":
            raise SerError(f"longer than {cfg.max_seconds:g} s")
        wave = wave[: int(cfg.max_seconds * sr)]
    if not np.any(wave):
        raise SerError("silent (all zeros)")
    return wave


def _decode_batch(batch: dict, rank: int | None, extractor, cfg: DecodeConfig) -> dict:
    """Decode, downmix, resample, trim, bound and normalise one batch; failures become an `error`."""
    if rank is not None:  # a forked worker: one core each, and never the parent's OpenMP pool (deadlocks)
        torch.set_num_threads(1)
    sr = extractor.sampling_rate
    waves, errors = [], []
    for path in batch["path"]:
        try:
            waves.append(_decode_one(path, sr, cfg))
            errors.append(None)
        except SerError as err:
            waves.append(np.zeros(0, dtype=np.float32))
            errors.append(str(err).removeprefix(f"{path}: "))
    ok = [w for w, e in zip(waves, errors) if e is None]
    # A waveform model's input is the normalised waveform; a feature model's features are computed
    # from the waveform per batch (after cropping), so its waveform is kept as decoded.
    normalised = iter(
        extractor(ok, sampling_rate=sr).input_values if ok and takes_waveform(extractor) else ok
    )
    return {
        "key": batch["key"],
        "input_values": [next(normalised) if e is None else w for w, e in zip(waves, errors)],
        "duration": [w.size / sr for w in waves],
        "error": errors,
    }


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _cache_name(cfg: PrepareConfig, extractor) -> str:
    return _digest({"decode": asdict(cfg.decode), "extractor": extractor.to_dict()})


def _fingerprint(records: list[dict], cfg: PrepareConfig, extractor) -> str:
    """Changes whenever any input of `prepare` does: files (by path, size, mtime), metadata, settings."""
    return _digest([_cache_name(cfg, extractor), asdict(cfg), [(r, _file_key(r["path"])) for r in records]])


def _load_parts(store: Path) -> datasets.Dataset | None:
    """The cache's Arrow parts as one memory-mapped table (None when empty)."""
    parts = [datasets.Dataset.from_file(str(p)) for p in sorted(store.glob("part-*.arrow"))]
    return datasets.concatenate_datasets(parts) if parts else None


def decode_cached(paths: list[str], cfg: PrepareConfig, extractor, cache_root: Path) -> datasets.Dataset:
    """Decoded rows (`key`, `input_values`, `duration`, `error`) for `paths`, in order. Only files
    absent from the cache are decoded, straight into a new Arrow part of it: nothing is copied."""
    store = cache_root / _cache_name(cfg, extractor)
    store.mkdir(parents=True, exist_ok=True)
    for stale in cache_root.iterdir():  # caches of other settings: superseded
        if stale != store:
            shutil.rmtree(stale, ignore_errors=True)
    keys = [_file_key(p) for p in paths]
    cached = _load_parts(store)
    known = set(cached["key"]) if cached is not None else set()
    todo = sorted({(k, p) for k, p in zip(keys, paths) if k not in known})
    if todo:
        part = store / f"part-{len(list(store.glob('part-*.arrow'))):05d}.arrow"
        datasets.Dataset.from_dict({"key": [k for k, _ in todo], "path": [p for _, p in todo]}).map(
            _decode_batch,
            batched=True,
            with_rank=True,
            batch_size=16,
            num_proc=cfg.num_proc if cfg.num_proc > 1 and len(todo) >= 8 * cfg.num_proc else None,
            fn_kwargs={"extractor": extractor, "cfg": cfg.decode},
            features=DECODED_COLUMNS,
            remove_columns=["path"],
            cache_file_name=str(part),  # written to a temporary file, renamed when complete
            desc=f"decoding {len(todo)} files",
        )
        cached = _load_parts(store)
    row = {k: i for i, k in enumerate(cached["key"])}
    return cached.select([row[k] for k in keys])


def _split_summary(ds: datasets.Dataset, labels: list[str]) -> dict:
    speakers = sorted({s for s in ds["speaker"] if s}) if "speaker" in ds.column_names else []
    names = ds["label"]
    return {
        "clips": len(ds),
        "speakers": len(speakers),
        "speaker_ids": speakers,
        "hours": round(float(sum(ds["duration"])) / 3600, 4),
        "labels": {label: names.count(label) for label in labels},
    }


def prepare(data_dirs: list[str | Path], out_dir: str | Path, cfg: PrepareConfig) -> dict:
    """Read, check, decode, split; write `dataset/`, `splits.json`, `feature_extractor/`, `summary.json`
    and `report.txt`. Files with a problem (`pipeline.audit`) are left out and reported; above
    `max_bad_fraction` of them, or with nothing usable, it stops (SerError) and lists them all in
    `problems.json`."""
    out = Path(out_dir)
    if len(cfg.corpora) not in (1, len(data_dirs)):
        raise SerError(f"give one --corpus for all data dirs or one per data dir ({len(data_dirs)})")
    kinds = cfg.corpora * len(data_dirs) if len(cfg.corpora) == 1 else cfg.corpora
    listed = read_corpora(list(zip(kinds, map(str, data_dirs))))
    extractor = build_feature_extractor(ModelConfig(backbone=cfg.backbone, architecture=cfg.architecture))
    inputs = _fingerprint(sorted(listed, key=lambda r: r["path"] or ""), cfg, extractor)
    if all((out / name).exists() for name in ("summary.json", "splits.json", DATASET_DIR)):
        previous = json.loads((out / "summary.json").read_text())
        if previous.get("inputs") == inputs:
            return previous  # same files, same settings: everything on disk is current
    audit = audit_records(listed, cfg.labels)
    records = sorted(audit.records, key=lambda r: r["path"])
    problems = audit.problems
    listing = out / "problems.json"
    try:
        check_bad_fraction(problems, len(records), cfg.max_bad_fraction, listing)
        (out / CACHE_DIR).mkdir(parents=True, exist_ok=True)
        decoded = decode_cached([r["path"] for r in records], cfg, extractor, out / CACHE_DIR)
        errors = decoded["error"]
        problems += [
            {"path": r["path"], "problem": decode_problem(e), "reason": e}
            for r, e in zip(records, errors)
            if e is not None
        ]
        check_bad_fraction(problems, errors.count(None), cfg.max_bad_fraction, listing)
    except SerError:
        out.mkdir(parents=True, exist_ok=True)
        write_file_atomic(listing, json.dumps(problems, indent=1))
        raise
    listing.unlink(missing_ok=True)
    usable = [i for i, e in enumerate(errors) if e is None]
    records = [records[i] for i in usable]
    if len({r["label"] for r in records}) < 2:
        raise SerError(
            f"only one label ({records[0]['label']}) among the usable files: a classifier needs two or more"
        )
    plan = make_splits(records, cfg.splits)
    columns = sorted({k for r in records for k in r})
    metadata = datasets.Dataset.from_dict(
        {k: [r.get(k) for r in records] for k in columns},
        features=datasets.Features({k: datasets.Value("string") for k in columns}),
    )
    target = out / DATASET_DIR
    shutil.rmtree(target, ignore_errors=True)
    metadata.save_to_disk(str(target / "metadata"))
    audio = decoded.select(usable).remove_columns(["key", "error"])
    audio.flatten_indices(cache_file_name=str(target / AUDIO_FILE))  # the one copy of the audio
    dataset = open_dataset(target)
    extractor.save_pretrained(out / FEATURE_EXTRACTOR_DIR)
    labels = sorted({r["label"] for r in records})
    (out / "splits.json").write_text(
        json.dumps({"scheme": plan.scheme, "note": plan.note, "labels": labels, "folds": plan.folds})
    )
    first = {name: dataset.select(plan.folds[0][name]) for name in SPLITS}
    summary = {
        "inputs": inputs,
        "corpora": sorted({r["corpus"] for r in records}),
        "synthetic": all((Path(d) / SYNTHETIC_MARK).is_file() for d in data_dirs),
        "data_dirs": [str(Path(d).resolve()) for d in data_dirs],
        "labels": labels,
        "sampling_rate": extractor.sampling_rate,
        "split_scheme": plan.scheme,
        "split_note": plan.note,
        "folds": len(plan.folds),
        "config": asdict(cfg),
        "splits": {name: _split_summary(ds, labels) for name, ds in first.items()},
        "candidate_files": len(records) + sum(p["problem"] not in HARMLESS for p in problems),
        "problems": problem_summary(problems),
        "left_out_labels": audit.left_out_labels,
        "skipped": problems,
    }
    write_file_atomic(out / "report.txt", "\n".join([*summary_lines(summary), *report_lines(summary)]) + "\n")
    write_file_atomic(out / "summary.json", json.dumps(summary, indent=2))
    plot_summary(summary, first, out / "summary.png")
    table_functionals(out, DEFAULT_FUNCTIONALS, cfg.num_proc)  # what training and `ser baseline` read
    return summary
