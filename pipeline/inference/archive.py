"""An archive to score: the audio files of a folder (recursively, by extension) or those a manifest
lists (CSV or JSON lines with a `path` column; its other columns are carried through to the output).

Each file has a key, the path as the manifest writes it or relative to the folder, which names it
in the output table and identifies it when a run resumes; a key listed twice is refused.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SerError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
MANIFESTS = (".csv", ".jsonl")
PATH_COLUMN = "path"


@dataclass(frozen=True)
class ArchiveFile:
    key: str  # the path as the manifest writes it, or relative to the folder
    path: Path  # where it is read from
    columns: dict[str, Any] = field(default_factory=dict)  # a manifest's other columns


def _folder(root: Path, extensions: tuple[str, ...]) -> list[ArchiveFile]:
    """Audio files under `root` by extension (any case), hidden files and folders left out."""
    found = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        hidden = any(part.startswith(".") for part in relative.parts)
        if path.is_file() and not hidden and path.suffix.lower() in extensions:
            found.append(ArchiveFile(relative.as_posix(), path))
    return found


def _rows(manifest: Path) -> list[dict[str, Any]]:
    if manifest.suffix.lower() == ".csv":
        with open(manifest, newline="") as f:
            return list(csv.DictReader(f))
    rows = []
    for number, line in enumerate(manifest.read_text().splitlines(), start=1):
        if line.strip():
            try:
                row = json.loads(line)
            except ValueError as err:
                raise SerError(f"{manifest}, line {number}: not JSON ({err})") from None
            if not isinstance(row, dict):
                raise SerError(f"{manifest}, line {number}: not a JSON object")
            rows.append(row)
    return rows


def _manifest(manifest: Path) -> list[ArchiveFile]:
    """The files a manifest lists, relative paths read from the manifest's directory."""
    found = []
    for number, row in enumerate(_rows(manifest), start=1):
        key = row.get(PATH_COLUMN)
        if not isinstance(key, str) or not key:
            columns = ", ".join(map(str, row)) or "none"
            raise SerError(f"{manifest}, row {number}: no {PATH_COLUMN!r} (its columns: {columns})")
        columns = {name: value for name, value in row.items() if name != PATH_COLUMN}
        found.append(ArchiveFile(key, manifest.parent / key, columns))
    return found


def archive_files(source: str | Path, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> list[ArchiveFile]:
    """The files of `source`: a folder (searched recursively) or a manifest (.csv or .jsonl)."""
    source = Path(source)
    if source.is_dir():
        found = _folder(source, extensions)
    elif source.is_file() and source.suffix.lower() in MANIFESTS:
        found = _manifest(source)
    elif source.is_file():
        raise SerError(f"{source}: a manifest is a .csv or .jsonl file with a {PATH_COLUMN!r} column")
    else:
        raise SerError(f"no folder or manifest at {source}")
    if not found:
        raise SerError(f"{source}: no audio files ({', '.join(extensions)})")
    twice = [key for key, count in Counter(f.key for f in found).items() if count > 1]
    if twice:
        raise SerError(f"{source}: {twice[0]} is listed more than once")
    return found
