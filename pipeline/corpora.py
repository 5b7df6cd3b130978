"""Corpus readers: turn a directory as distributed into records (path, label, speaker, ...).

Every value of a record is a string or None. Labels go through `CANONICAL`, so corpora that spell
an emotion differently ("anger", "ANG", "W") can be combined.
"""

from __future__ import annotations

import csv
import difflib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

from .errors import SerError

AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".mp3", ".opus"}
MANIFEST_NAMES = ("manifest.csv", "manifest.jsonl")

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

# modality-channel-emotion-intensity-statement-repetition-actor, e.g. Actor_12/03-01-05-01-02-01-12.wav
RAVDESS_NAME = re.compile(r"(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)")
RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
RAVDESS_CHANNELS = {"01": "speech", "02": "song"}
RAVDESS_INTENSITIES = {"01": "normal", "02": "strong"}
RAVDESS_STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}

# speaker_sentence_emotion_level, e.g. AudioWAV/1001_DFA_ANG_XX.wav
CREMAD_NAME = re.compile(r"(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})")
CREMAD_EMOTIONS = {
    "ANG": "angry",
    "DIS": "disgust",
    "FEA": "fearful",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
CREMAD_LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
CREMAD_DEMOGRAPHICS = "VideoDemographics.csv"

# speaker, text code, emotion letter (German initial), version, e.g. wav/03a01Fa.wav
EMODB_NAME = re.compile(r"(\d\d)([a-z]\d\d)([A-Z])([a-z])")
EMODB_EMOTIONS = {
    "W": "angry",  # Ärger
    "L": "boredom",  # Langeweile
    "E": "disgust",  # Ekel
    "A": "fearful",  # Angst
    "F": "happy",  # Freude
    "T": "sad",  # Trauer
    "N": "neutral",
}
EMODB_GENDERS = {
    "03": "male",
    "08": "female",
    "09": "female",
    "10": "male",
    "11": "male",
    "12": "male",
    "13": "female",
    "14": "female",
    "15": "male",
    "16": "female",
}

# speaker_word_emotion, e.g. OAF_angry/OAF_back_angry.wav, YAF_pleasant_surprised/YAF_back_ps.wav;
# one file of the archive is misnamed OAF_neutral/OA_bite_neutral.wav. Folder case varies (OAF_Sad).
TESS_NAME = re.compile(r"(OAF|YAF|OA)_(\w+)_([a-z]+)", re.IGNORECASE)
TESS_EMOTIONS = {"angry", "disgust", "fear", "happy", "neutral", "ps", "sad"}

# thorsten-emotional_v02/<style>/<32-hex utterance id>.wav, the same id in every style folder,
# and thorsten-emotional-metadata.csv with `id|text` lines.
THORSTEN_STYLES = {"amused", "angry", "disgusted", "drunk", "neutral", "sleepy", "surprised", "whisper"}
THORSTEN_ID = re.compile(r"[0-9a-f]{32}")
THORSTEN_METADATA = "thorsten-emotional-metadata.csv"


def canonical(label: str) -> str:
    """The shared spelling of an emotion label."""
    label = label.strip().lower()
    return CANONICAL.get(re.sub(r"[\s-]+", "_", label), label)


def _audio_files(root: Path, per_folder: int | None = None) -> list[Path]:
    """Audio files under `root`, sorted; hidden files and folders (macOS `__MACOSX` litter) are skipped.
    `per_folder` keeps only the first few of each folder: a cheap, deterministic sample."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__MACOSX")))
        names = sorted(f for f in files if Path(f).suffix.lower() in AUDIO_EXTENSIONS and f[0] != ".")
        found += [p for p in (Path(folder, f) for f in names[:per_folder]) if p.is_file()]
    return sorted(found)


def _find(root: Path, name: str) -> Path | None:
    """The first file called `name` under `root` (sorted, so the same one every time)."""
    return min(root.rglob(name), default=None)


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
    rows = _read_table(manifest)
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


def _parse_ravdess(path: Path) -> dict | None:
    match = RAVDESS_NAME.fullmatch(path.stem)
    if not match or match[1] != "03" or match[3] not in RAVDESS_EMOTIONS:
        return None  # 01/02 are the full-AV and video-only .mp4 files
    actor = match[7]
    return {
        "path": str(path),
        "label": RAVDESS_EMOTIONS[match[3]],
        "speaker": f"actor{actor}",
        "gender": "male" if int(actor) % 2 else "female",
        "intensity": RAVDESS_INTENSITIES.get(match[4]),
        "sentence": RAVDESS_STATEMENTS.get(match[5]),
        "channel": RAVDESS_CHANNELS.get(match[2]),
    }


def _parse_cremad(path: Path) -> dict | None:
    match = CREMAD_NAME.fullmatch(path.stem)
    if not match or match[3] not in CREMAD_EMOTIONS:
        return None
    return {
        "path": str(path),
        "label": CREMAD_EMOTIONS[match[3]],
        "speaker": match[1],
        "intensity": CREMAD_LEVELS.get(match[4]),
        "sentence": match[2],
    }


def _parse_emodb(path: Path) -> dict | None:
    match = EMODB_NAME.fullmatch(path.stem)
    if not match or match[3] not in EMODB_EMOTIONS:
        return None
    return {
        "path": str(path),
        "label": EMODB_EMOTIONS[match[3]],
        "speaker": match[1],
        "gender": EMODB_GENDERS.get(match[1]),
        "sentence": match[2],
    }


def _parse_tess(path: Path) -> dict | None:
    match = TESS_NAME.fullmatch(path.stem)
    if not match or match[3].lower() not in TESS_EMOTIONS:
        return None
    speaker = match[1].upper()
    return {
        "path": str(path),
        "label": canonical(match[3]),
        "speaker": "OAF" if speaker == "OA" else speaker,
        "gender": "female",
        "sentence": match[2].lower(),
    }


def _parse_thorsten(path: Path) -> dict | None:
    style = path.parent.name.lower()
    if style not in THORSTEN_STYLES or not THORSTEN_ID.fullmatch(path.stem):
        return None
    return {
        "path": str(path),
        "label": canonical(style),
        "speaker": "thorsten",
        "gender": "male",
        "sentence": path.stem,
    }


NAME_PARSERS: dict[str, Callable[[Path], dict | None]] = {
    "ravdess": _parse_ravdess,
    "cremad": _parse_cremad,
    "emodb": _parse_emodb,
    "tess": _parse_tess,
    "thorsten": _parse_thorsten,
}


def _read_named(root: Path, parse: Callable[[Path], dict | None]) -> list[dict]:
    """Records of the files `parse` understands (others are skipped). A clip found twice (a .wav and an
    .mp3 of it, or a mirror that ships a folder twice) is kept once: the .wav, then the shortest path."""
    by_clip: dict[tuple[str, str], dict] = {}
    for path in sorted(_audio_files(root), key=lambda p: (p.suffix.lower() != ".wav", len(p.parts), p)):
        record = parse(path)
        if record is not None:
            by_clip.setdefault((record["label"], path.stem.lower()), record)
    return sorted(by_clip.values(), key=lambda r: r["path"])


def read_ravdess(root: Path) -> list[dict]:
    """RAVDESS `Actor_NN/03-CC-EE-II-SS-RR-NN.wav`: speaker, gender, intensity, sentence, channel."""
    return _read_named(root, _parse_ravdess)


def _cremad_genders(root: Path) -> dict[str, str]:
    """ActorID -> gender from CREMA-D's VideoDemographics.csv, if it is anywhere under `root`."""
    table = _find(root, CREMAD_DEMOGRAPHICS)
    rows = _read_table(table) if table else []
    return {row["ActorID"]: row["Sex"].lower() for row in rows if row.get("ActorID") and row.get("Sex")}


def read_cremad(root: Path) -> list[dict]:
    """CREMA-D `AudioWAV/1001_DFA_ANG_XX.wav`: speaker, sentence, intensity; gender from the demographics."""
    genders = _cremad_genders(root)
    records = _read_named(root, _parse_cremad)
    for record in records:
        record["gender"] = genders.get(record["speaker"])
    return records


def read_emodb(root: Path) -> list[dict]:
    """EmoDB `wav/03a01Fa.wav`: speaker, gender, sentence (text code)."""
    return _read_named(root, _parse_emodb)


def read_tess(root: Path) -> list[dict]:
    """TESS `OAF_angry/OAF_back_angry.wav`: speaker (OAF/YAF), sentence (the word)."""
    return _read_named(root, _parse_tess)


def read_thorsten(root: Path) -> list[dict]:
    """Thorsten-emotional `<style>/<utterance id>.wav`: sentence = the id, `text` from the metadata file."""
    table = _find(root, THORSTEN_METADATA)
    lines = table.read_text(encoding="utf-8").splitlines() if table else []
    texts = dict(line.split("|")[:2] for line in lines if "|" in line)
    records = _read_named(root, _parse_thorsten)
    for record in records:
        record["text"] = texts.get(record["sentence"])
    return records


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
    sample = _audio_files(root, per_folder=20)
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
