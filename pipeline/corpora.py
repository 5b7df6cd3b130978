"""Corpus readers: turn a directory as distributed into records (path, label, speaker, ...)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from .errors import SerError

AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".mp3", ".opus"}
MANIFEST_NAMES = ("manifest.csv", "manifest.jsonl")


def _audio_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())


def _read_table(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV (header line) or JSONL file."""
    if path.suffix == ".jsonl":
        rows = []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise SerError(f"{path}:{number}: not valid JSON ({err.msg})") from err
        return rows
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_folder(root: Path) -> list[dict]:
    """label = parent folder; an optional `metadata.csv` (column `file`) adds speaker and more."""
    extra: dict[str, dict[str, str]] = {}
    meta = root / "metadata.csv"
    if meta.is_file():
        rows = _read_table(meta)
        if rows and "file" not in rows[0]:
            raise SerError(f"{meta} needs a 'file' column (path relative to {root})")
        extra = {Path(row.pop("file")).as_posix(): row for row in rows}
    records = []
    for path in _audio_files(root):
        rel = path.relative_to(root)
        if len(rel.parts) < 2:
            continue  # a file at the top level has no label folder
        record = {"path": str(path), "label": rel.parts[-2], "speaker": None}
        record.update({k: v or None for k, v in extra.get(rel.as_posix(), {}).items()})
        records.append(record)
    return records


def read_manifest(root: Path) -> list[dict]:
    """A `manifest.csv` or `manifest.jsonl` with `path,label[,speaker]`, paths relative to it."""
    manifest = (
        root if root.is_file() else next((root / n for n in MANIFEST_NAMES if (root / n).is_file()), None)
    )
    if manifest is None:
        raise SerError(f"no manifest.csv or manifest.jsonl in {root}")
    rows = _read_table(manifest)
    missing = {"path", "label"} - set(rows[0] if rows else ())
    if missing:
        raise SerError(f"{manifest} lacks column(s): {', '.join(sorted(missing))}")
    records = []
    for row in rows:
        record = {k: (str(v) if v not in (None, "") else None) for k, v in row.items()}
        record["path"] = str((manifest.parent / row["path"]).resolve())
        record.setdefault("speaker", None)
        records.append(record)
    return records


READERS = {"folder": read_folder, "csv": read_manifest}


def detect(root: Path) -> str:
    """Which reader fits `root`."""
    if root.is_file() or any((root / n).is_file() for n in MANIFEST_NAMES):
        return "csv"
    return "folder"


def read_corpus(kind: str, data_dir: str | Path) -> tuple[str, list[dict]]:
    """(reader used, records). `kind="auto"` detects the layout."""
    root = Path(data_dir)
    if not root.exists():
        raise SerError(f"data directory not found: {root}")
    if kind == "auto":
        kind = detect(root)
    if kind not in READERS:
        raise SerError(f"unknown corpus {kind!r}; choose from auto, {', '.join(READERS)}")
    records = READERS[kind](root)
    if not records:
        raise SerError(f"no labelled audio found in {root} (reader {kind!r})")
    return kind, records
