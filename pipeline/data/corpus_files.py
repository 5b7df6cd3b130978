"""The generic corpus layouts: labels as folder names (`folder`), or a manifest table (`csv`).

Every value of a record is a string or None. Labels go through `CANONICAL`, so corpora that spell
an emotion differently ("anger", "ANG", "W") can be combined.
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

from ..errors import SerError

AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".mp3", ".opus"}
MANIFEST_NAMES = ("manifest.csv", "manifest.jsonl")
SYNTHETIC_MARK = "SYNTHETIC.txt"  # `ser synth` writes it in the corpus root; `ser prepare` records it

# Corpus spellings (lower case, words joined by "_") -> one shared label set; others are kept, lower-cased.
CANONICAL = {
    "anger": "angry",
    "happiness": "happy",
    "joy": "happy",
    "fear": "fearful",
    "anxiety": "fearful",
    "surprise": "surprised",
    "ps": "surprised",
    "pleasant_surprise": "surprised",
    "pleasant_surprised": "surprised",
    "sadness": "sad",
    "disgusted": "disgust",
    "bored": "boredom",
}


def canonical(label: str) -> str:
    """The shared spelling of an emotion label."""
    label = label.strip().lower()
    return CANONICAL.get(re.sub(r"[\s-]+", "_", label), label)


def audio_files(root: Path, per_folder: int | None = None) -> list[Path]:
    """Audio files under `root`, sorted; hidden files and folders (macOS `__MACOSX` litter) are skipped.
    `per_folder` keeps only the first few of each folder: a cheap, deterministic sample."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__MACOSX")))
        names = sorted(f for f in files if Path(f).suffix.lower() in AUDIO_EXTENSIONS and f[0] != ".")
        found += [p for p in (Path(folder, f) for f in names[:per_folder]) if p.is_file()]
    return sorted(found)


def find_file(root: Path, name: str) -> Path | None:
    """The first file called `name` under `root` (sorted, so the same one every time)."""
    return min(root.rglob(name), default=None)


def read_table(path: Path) -> list[dict[str, str]]:
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
        rows = read_table(meta)
        if rows and "file" not in rows[0]:
            raise SerError(f"{meta} needs a 'file' column (path relative to {root})")
        extra = {Path(row.pop("file")).as_posix(): row for row in rows}
    records = []
    for path in audio_files(root):
        rel = path.relative_to(root)
        if len(rel.parts) < 2:
            continue  # a file at the top level has no label folder
        record = {"path": str(path), "label": canonical(rel.parts[-2]), "speaker": None}
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
    rows = read_table(manifest)
    if not rows:
        return []
    missing = {"path", "label"} - set(rows[0])
    if missing:
        raise SerError(f"{manifest} lacks column(s): {', '.join(sorted(missing))}")
    records = []
    for row in rows:
        # A short CSV row has None values; a long one an extra list under the key None: dropped.
        record = {k: (str(v).strip() if v not in (None, "") else None) for k, v in row.items() if k}
        path = record.get("path")  # an empty path stays empty: `prepare` reports it
        record["path"] = str((manifest.parent / path).resolve()) if path else ""
        record["label"] = record.get("label") and canonical(record["label"])
        record.setdefault("speaker", None)
        records.append(record)
    return records
