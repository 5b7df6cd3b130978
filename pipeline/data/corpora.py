"""Corpus readers by name (or detected), and several corpora read into one list of records
(path, label, speaker, ...)."""

from __future__ import annotations

import difflib
from pathlib import Path

from ..errors import SerError
from .corpus_files import MANIFEST_NAMES, audio_files, canonical, read_folder, read_manifest
from .known_corpora import (
    NAME_PARSERS,
    read_cremad,
    read_emodb,
    read_ravdess,
    read_tess,
    read_thorsten,
)

READERS = {
    "folder": read_folder,
    "csv": read_manifest,
    "ravdess": read_ravdess,
    "cremad": read_cremad,
    "emodb": read_emodb,
    "tess": read_tess,
    "thorsten": read_thorsten,
}


def detect(root: Path) -> str:
    """Which reader fits `root`: a manifest, else the corpus whose file names most sampled files
    follow (more than half), else `folder`."""
    if root.is_file() or any((root / n).is_file() for n in MANIFEST_NAMES):
        return "csv"
    sample = audio_files(root, per_folder=20)
    for kind, parse in NAME_PARSERS.items():
        if sum(parse(path) is not None for path in sample) * 2 > len(sample):
            return kind
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


def read_corpora(specs: list[tuple[str, str | Path]]) -> list[dict]:
    """Several corpora, given as (kind, data_dir), in one list. Each record gets a `corpus` column (the
    reader used, numbered when it repeats); when there are several, speakers are prefixed with it, so
    they never collide."""
    if not specs:
        raise SerError("no corpus given")
    combined: list[dict] = []
    seen: dict[str, int] = {}
    for kind, data_dir in specs:
        reader, records = read_corpus(kind, data_dir)
        seen[reader] = seen.get(reader, 0) + 1
        name = reader if seen[reader] == 1 else f"{reader}{seen[reader]}"
        for record in records:
            speaker = record.get("speaker")
            if len(specs) > 1:
                speaker = speaker and f"{name}:{speaker}"
            combined.append({**record, "corpus": name, "speaker": speaker})
    return combined


def select_labels(records: list[dict], labels: list[str]) -> list[dict]:
    """The records whose label is one of `labels` (canonical spellings accepted); all of them when
    `labels` is empty."""
    if not labels:
        return records
    wanted = {canonical(label) for label in labels}
    unknown = wanted - {r["label"] for r in records}
    if unknown:
        available = sorted({r["label"] for r in records if r["label"]})
        close = {u: difflib.get_close_matches(u, available, n=1, cutoff=0.75) for u in sorted(unknown)}
        hint = ", ".join(f"{u} -> {c[0]}" for u, c in close.items() if c)
        raise SerError(
            f"label(s) not in the corpus: {', '.join(sorted(unknown))}; it has {', '.join(available)}"
            + (f" (did you mean {hint}?)" if hint else "")
        )
    return [r for r in records if r["label"] in wanted]
