"""Corpus readers on tiny stand-ins built with the real file and folder names of each corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline.data.corpora import read_corpora, read_corpus, select_labels
from pipeline.data.corpus_files import CANONICAL, canonical
from pipeline.data.splits import SplitConfig, make_splits
from pipeline.errors import SerError

pytestmark = pytest.mark.fast  # pure logic: `make test-fast`

SR = 16000
TONE = (0.1 * np.sin(2 * np.pi * 220 * np.arange(int(0.3 * SR)) / SR)).astype(np.float32)
SPLIT = SplitConfig(validation=0.2, test=0.2, seed=0)


def _write(root: Path, *names: str) -> None:
    """A 0.3 s tone at each relative path (any extension soundfile knows; others get a few bytes)."""
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix in (".wav", ".flac"):
            sf.write(path, TONE, SR)
        else:
            path.write_bytes(b"not audio")


def _by_name(records: list[dict]) -> dict[str, dict]:
    return {Path(r["path"]).name: r for r in records}


def _assert_speaker_disjoint(records: list[dict]) -> None:
    plan = make_splits(records, SPLIT)
    assert plan.scheme == "speaker" and len(plan.folds) == 1
    speakers = [{records[i]["speaker"] for i in rows} for rows in plan.folds[0].values()]
    assert all(speakers) and not (
        speakers[0] & speakers[1] or speakers[0] & speakers[2] or speakers[1] & speakers[2]
    )
    assert sum(len(rows) for rows in plan.folds[0].values()) == len(records)


@pytest.fixture
def ravdess(tmp_path) -> Path:
    root = tmp_path / "ravdess"
    for actor in range(1, 7):
        _write(
            root,
            *(
                f"Actor_{actor:02d}/03-01-{emotion}-{intensity}-{statement}-01-{actor:02d}.wav"
                for emotion, intensity, statement in [
                    ("01", "01", "01"),
                    ("05", "02", "02"),
                    ("08", "01", "02"),
                ]
            ),
        )
    _write(
        root,
        "Actor_12/03-02-06-01-01-02-12.wav",  # song, fearful
        "Actor_01/01-01-05-01-01-01-01.mp4",  # full-AV video: not audio
        "Actor_01/02-01-05-01-01-01-01.wav",  # video-only modality: skipped
        "Actor_01/03-01-09-01-01-01-01.wav",  # no emotion 09: skipped
        "Actor_01/notes.wav",
        "__MACOSX/Actor_01/._03-01-01-01-01-01-01.wav",  # macOS zip litter
    )
    return root


def test_ravdess_names_give_emotion_actor_gender_and_more(ravdess):
    kind, records = read_corpus("auto", ravdess)
    assert kind == "ravdess"
    assert len(records) == 6 * 3 + 1
    rec = _by_name(records)
    r = rec["03-01-05-02-02-01-02.wav"]
    assert r == {
        "path": str(ravdess / "Actor_02" / "03-01-05-02-02-01-02.wav"),
        "label": "angry",
        "speaker": "actor02",
        "gender": "female",
        "intensity": "strong",
        "sentence": "Dogs are sitting by the door",
        "channel": "speech",
    }
    assert rec["03-01-01-01-01-01-01.wav"]["gender"] == "male"
    assert rec["03-01-08-01-02-01-03.wav"]["label"] == "surprised"
    song = rec["03-02-06-01-01-02-12.wav"]
    assert (song["label"], song["channel"], song["speaker"]) == ("fearful", "song", "actor12")
    assert {r["speaker"] for r in records} == {f"actor{a:02d}" for a in (1, 2, 3, 4, 5, 6, 12)}
    assert all(isinstance(v, str) for r in records for v in r.values())
    _assert_speaker_disjoint(records)


@pytest.fixture
def cremad(tmp_path) -> Path:
    root = tmp_path / "CREMA-D"
    names = [
        f"{speaker}_{sentence}_{emotion}_{level}"
        for speaker, sentence, emotion, level in [
            ("1001", "DFA", "ANG", "XX"),
            ("1001", "IEO", "HAP", "HI"),
            ("1002", "IEO", "SAD", "LO"),
            ("1002", "TIE", "FEA", "MD"),
            ("1003", "ITH", "DIS", "XX"),
            ("1004", "IWW", "NEU", "XX"),
            ("1005", "MTI", "ANG", "HI"),
        ]
    ]
    _write(root, *(f"AudioWAV/{n}.wav" for n in names), "AudioMP3/1001_DFA_ANG_XX.mp3", "AudioWAV/1001.wav")
    (root / "VideoDemographics.csv").write_text(
        '"ActorID","Age","Sex","Race","Ethnicity"\n'
        '1001,51,"Male","Caucasian","Not Hispanic"\n'
        '1002,21,"Female","Caucasian","Not Hispanic"\n'
        '1003,21,"Female","Caucasian","Not Hispanic"\n'
        '1004,42,"Female","Caucasian","Not Hispanic"\n'
    )
    return root


def test_cremad_names_and_demographics(cremad):
    kind, records = read_corpus("auto", cremad)
    assert kind == "cremad"
    assert len(records) == 7  # the .mp3 twin of a .wav and the odd name are left out
    assert all(r["path"].endswith(".wav") for r in records)
    r = _by_name(records)["1002_TIE_FEA_MD.wav"]
    assert (r["label"], r["speaker"], r["gender"], r["intensity"], r["sentence"]) == (
        "fearful",
        "1002",
        "female",
        "medium",
        "TIE",
    )
    assert _by_name(records)["1001_DFA_ANG_XX.wav"]["intensity"] == "unspecified"
    assert _by_name(records)["1005_MTI_ANG_HI.wav"]["gender"] is None  # not in the demographics table
    assert {r["label"] for r in records} == {"angry", "happy", "sad", "fearful", "disgust", "neutral"}
    _assert_speaker_disjoint(records)
    (cremad / "VideoDemographics.csv").unlink()
    assert {r["gender"] for r in read_corpus("cremad", cremad)[1]} == {None}


@pytest.fixture
def emodb(tmp_path) -> Path:
    root = tmp_path / "emodb"
    _write(
        root,
        "wav/03a01Fa.wav",
        "wav/03a01Wa.wav",
        "wav/08a02Lb.wav",
        "wav/09b01Ea.wav",
        "wav/10b03Ac.wav",
        "wav/13b10Ta.wav",
        "wav/16a07Na.wav",
        "wav/16a07Nb.wav",
        "wav/03a01Xa.wav",  # no emotion X: skipped
        "lablaut/readme.wav",
    )
    return root


def test_emodb_names_give_emotion_speaker_gender_and_text(emodb):
    kind, records = read_corpus("auto", emodb)
    assert kind == "emodb"
    rec = _by_name(records)
    assert set(rec) == {
        "03a01Fa.wav",
        "03a01Wa.wav",
        "08a02Lb.wav",
        "09b01Ea.wav",
        "10b03Ac.wav",
        "13b10Ta.wav",
        "16a07Na.wav",
        "16a07Nb.wav",
    }
    assert [rec[n]["label"] for n in sorted(rec)] == [
        "happy",
        "angry",
        "boredom",
        "disgust",
        "fearful",
        "sad",
        "neutral",
        "neutral",
    ]
    assert (rec["03a01Fa.wav"]["speaker"], rec["03a01Fa.wav"]["gender"], rec["03a01Fa.wav"]["sentence"]) == (
        "03",
        "male",
        "a01",
    )
    assert {rec[n]["gender"] for n in ("08a02Lb.wav", "09b01Ea.wav", "13b10Ta.wav", "16a07Na.wav")} == {
        "female"
    }
    assert rec["10b03Ac.wav"]["gender"] == "male"
    _assert_speaker_disjoint(records)


@pytest.fixture
def tess(tmp_path) -> Path:
    root = tmp_path / "tess"
    data = "TESS Toronto emotional speech set data"
    names = [
        "OAF_angry/OAF_back_angry.wav",
        "OAF_Fear/OAF_back_fear.wav",
        "OAF_Pleasant_surprise/OAF_back_ps.wav",
        "OAF_Sad/OAF_bar_sad.wav",
        "OAF_neutral/OAF_back_neutral.wav",
        "OAF_neutral/OA_bite_neutral.wav",  # misnamed in the archive
        "YAF_disgust/YAF_back_disgust.wav",
        "YAF_happy/YAF_bar_happy.wav",
        "YAF_pleasant_surprised/YAF_back_ps.wav",
        "YAF_sad/YAF_back_sad.wav",
    ]
    # Some mirrors hold the whole set twice, once under a nested folder.
    _write(
        root,
        *(f"{data}/{n}" for n in names),
        *(f"tess toronto emotional speech set data/{data}/{n}" for n in names),
    )
    _write(root, f"{data}/YAF_sad/Thumbs.wav", f"{data}/YAF_sad/YAF_back_calm.wav")
    return root


def test_tess_folders_and_names(tess):
    kind, records = read_corpus("auto", tess)
    assert kind == "tess"
    rec = _by_name(records)
    assert len(records) == 10  # the nested copy is not counted twice
    assert "tess toronto" not in records[0]["path"]
    assert {r["speaker"] for r in records} == {"OAF", "YAF"}
    assert {r["gender"] for r in records} == {"female"}
    assert {r["label"] for r in records} == {
        "angry",
        "fearful",
        "surprised",
        "sad",
        "neutral",
        "disgust",
        "happy",
    }
    assert (rec["OA_bite_neutral.wav"]["speaker"], rec["OA_bite_neutral.wav"]["sentence"]) == ("OAF", "bite")
    assert (rec["YAF_back_ps.wav"]["label"], rec["YAF_back_ps.wav"]["sentence"]) == ("surprised", "back")
    assert rec["OAF_back_fear.wav"]["label"] == "fearful"
    assert make_splits(records, SPLIT).scheme == "sentence"  # two speakers: too few to split by speaker


THORSTEN_IDS = ["0aaf116f8774a140909231e0b610dc98", "4abd7cf4f7e10b5d91570fdb4b9e8138"]


@pytest.fixture
def thorsten(tmp_path) -> Path:
    root = tmp_path / "thorsten-emotional_v02"
    styles = ["amused", "angry", "disgusted", "drunk", "neutral", "sleepy", "surprised", "whisper"]
    _write(
        root, *(f"{style}/{uid}.wav" for style in styles for uid in THORSTEN_IDS), "angry/notes.wav", "x.wav"
    )
    (root / "thorsten-emotional-metadata.csv").write_text(
        f"{THORSTEN_IDS[0]}|Bisher kein einziges Mal.\n{THORSTEN_IDS[1]}|Mist, wieder nichts geschafft.\n"
    )
    (root / "README.md").write_text("Thorsten-Voice emotional dataset\n")
    return root


def test_thorsten_styles_and_sentence_ids(thorsten):
    kind, records = read_corpus("auto", thorsten)
    assert kind == "thorsten"
    assert len(records) == 16
    assert {r["label"] for r in records} == {
        "amused",
        "angry",
        "disgust",
        "drunk",
        "neutral",
        "sleepy",
        "surprised",
        "whisper",
    }
    assert {(r["speaker"], r["gender"]) for r in records} == {("thorsten", "male")}
    assert {r["sentence"] for r in records} == set(THORSTEN_IDS)
    first = [r for r in records if r["sentence"] == THORSTEN_IDS[0]]
    assert len(first) == 8 and {r["text"] for r in first} == {"Bisher kein einziges Mal."}
    assert make_splits(records, SPLIT).scheme == "clip"  # one speaker, two sentences


def test_auto_falls_back_to_folder_and_csv(tmp_path):
    # Emotion folders with Thorsten-like names but ordinary file names are a plain folder corpus.
    _write(tmp_path / "plain", "angry/a1.wav", "neutral/a2.wav", "Anger/a3.wav", "Happiness/a4.wav")
    kind, records = read_corpus("auto", tmp_path / "plain")
    assert kind == "folder"
    assert sorted(r["label"] for r in records) == ["angry", "angry", "happy", "neutral"]
    _write(tmp_path / "listed", "clips/03-01-05-01-01-01-01.wav")
    (tmp_path / "listed" / "manifest.csv").write_text("path,label\nclips/03-01-05-01-01-01-01.wav,Sadness\n")
    kind, records = read_corpus("auto", tmp_path / "listed")
    assert (kind, records[0]["label"]) == ("csv", "sad")


def test_a_corpus_of_odd_names_only_is_an_error(tmp_path):
    _write(tmp_path, "Actor_01/notes.wav", "Actor_01/03-01-05.wav")
    with pytest.raises(SerError, match="no labelled audio"):
        read_corpus("ravdess", tmp_path)
    for kind in ("cremad", "emodb", "tess", "thorsten"):
        with pytest.raises(SerError, match="no labelled audio"):
            read_corpus(kind, tmp_path)


def test_canonical_labels():
    assert {CANONICAL[k] for k in ("anger", "happiness", "joy", "fear", "surprise", "ps", "sadness")} == {
        "angry",
        "happy",
        "fearful",
        "surprised",
        "sad",
    }
    assert canonical("disgusted") == "disgust"
    assert canonical(" Pleasant Surprise ") == "surprised"
    assert canonical("pleasant-surprised") == "surprised"
    assert canonical("Boredom") == "boredom"
    assert canonical("Calm") == "calm"


def test_select_labels(emodb):
    _, records = read_corpus("emodb", emodb)
    kept = select_labels(records, ["anger", "Neutral"])
    assert sorted(r["label"] for r in kept) == ["angry", "neutral", "neutral"]
    assert select_labels(records, []) == records
    with pytest.raises(SerError, match="calm, surprised; it has angry, boredom"):
        select_labels(records, ["angry", "surprise", "calm"])


def test_read_corpora_prefixes_speakers(emodb, ravdess, tmp_path):
    copy = tmp_path / "emodb-copy"
    _write(copy, "wav/03a02Fa.wav", "wav/08a04Wa.wav", "wav/16b01Ta.wav")
    records = read_corpora([("auto", emodb), ("ravdess", ravdess), ("emodb", copy)])
    corpora = {r["corpus"] for r in records}
    assert corpora == {"emodb", "ravdess", "emodb2"}
    assert all(r["speaker"].startswith(r["corpus"] + ":") for r in records)
    first = {r["speaker"] for r in records if r["corpus"] == "emodb"}
    second = {r["speaker"] for r in records if r["corpus"] == "emodb2"}
    assert "emodb:03" in first and "emodb2:03" in second and not first & second
    assert {r["label"] for r in records} >= {"angry", "happy", "boredom", "surprised", "neutral"}
    _assert_speaker_disjoint(records)
    with pytest.raises(SerError, match="no corpus"):
        read_corpora([])
