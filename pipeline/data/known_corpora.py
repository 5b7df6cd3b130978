"""The published emotional-speech corpora, recognised by their file names: RAVDESS, CREMA-D, EmoDB,
TESS and Thorsten-emotional (speaker, gender, sentence and more come from the names)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from .corpus_files import audio_files, canonical, find_file, read_table

# modality-channel-emotion-intensity-statement-repetition-actor, e.g. Actor_12/03-01-05-01-02-01-12.wav
RAVDESS_NAME = re.compile(r"(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)")
RAVDESS_EMOTIONS = {
    f"{code:02d}": emotion
    for code, emotion in enumerate(
        ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"], 1
    )
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


def _match(pattern: re.Pattern, path: Path, emotions, group: int) -> re.Match | None:
    """The match of `path`'s name with a corpus' naming `pattern`, if the emotion code (match
    `group`) is one the corpus defines."""
    match = pattern.fullmatch(path.stem)
    return match if match and match[group] in emotions else None


def _record(path: Path, label: str, speaker: str, sentence: str, **more: str | None) -> dict:
    """A record of a named corpus: every one names the emotion, the speaker and the sentence."""
    return {"path": str(path), "label": label, "speaker": speaker, "sentence": sentence, **more}


def _parse_ravdess(path: Path) -> dict | None:
    match = _match(RAVDESS_NAME, path, RAVDESS_EMOTIONS, 3)
    if not match or match[1] != "03":
        return None  # 01/02 are the full-AV and video-only .mp4 files
    return _record(
        path,
        RAVDESS_EMOTIONS[match[3]],
        f"actor{match[7]}",
        RAVDESS_STATEMENTS.get(match[5]),
        gender="male" if int(match[7]) % 2 else "female",
        intensity=RAVDESS_INTENSITIES.get(match[4]),
        channel=RAVDESS_CHANNELS.get(match[2]),
    )


def _parse_cremad(path: Path) -> dict | None:
    if not (match := _match(CREMAD_NAME, path, CREMAD_EMOTIONS, 3)):
        return None
    level = CREMAD_LEVELS.get(match[4])
    return _record(path, CREMAD_EMOTIONS[match[3]], match[1], match[2], intensity=level)


def _parse_emodb(path: Path) -> dict | None:
    if not (match := _match(EMODB_NAME, path, EMODB_EMOTIONS, 3)):
        return None
    return _record(path, EMODB_EMOTIONS[match[3]], match[1], match[2], gender=EMODB_GENDERS.get(match[1]))


def _parse_tess(path: Path) -> dict | None:
    match = TESS_NAME.fullmatch(path.stem)
    if not match or match[3].lower() not in TESS_EMOTIONS:
        return None
    speaker = "OAF" if match[1].upper() == "OA" else match[1].upper()
    return _record(path, canonical(match[3]), speaker, match[2].lower(), gender="female")


def _parse_thorsten(path: Path) -> dict | None:
    style = path.parent.name.lower()
    if style not in THORSTEN_STYLES or not THORSTEN_ID.fullmatch(path.stem):
        return None
    return _record(path, canonical(style), "thorsten", path.stem, gender="male")


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
    for path in sorted(audio_files(root), key=lambda p: (p.suffix.lower() != ".wav", len(p.parts), p)):
        record = parse(path)
        if record is not None:
            by_clip.setdefault((record["label"], path.stem.lower()), record)
    return sorted(by_clip.values(), key=lambda r: r["path"])


def read_ravdess(root: Path) -> list[dict]:
    """RAVDESS `Actor_NN/03-CC-EE-II-SS-RR-NN.wav`: speaker, gender, intensity, sentence, channel."""
    return _read_named(root, _parse_ravdess)


def _cremad_genders(root: Path) -> dict[str, str]:
    """ActorID -> gender from CREMA-D's VideoDemographics.csv, if it is anywhere under `root`."""
    table = find_file(root, CREMAD_DEMOGRAPHICS)
    rows = read_table(table) if table else []
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
    table = find_file(root, THORSTEN_METADATA)
    lines = table.read_text(encoding="utf-8").splitlines() if table else []
    texts = dict(line.split("|")[:2] for line in lines if "|" in line)
    records = _read_named(root, _parse_thorsten)
    for record in records:
        record["text"] = texts.get(record["sentence"])
    return records
