"""Demo corpus, corpus reading and preprocessing with bad files."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline.data.audit import audit_records
from pipeline.data.corpora import read_corpus
from pipeline.data.prepare import prepare
from pipeline.data.prepare_config import PrepareConfig
from pipeline.data.prepared import load_prepared
from pipeline.data.synth import EMOTIONS, make_speakers, synthesize_corpus, synthesize_utterance
from pipeline.errors import SerError


@pytest.mark.fast
def test_synth_is_deterministic_and_varied(tmp_path):
    a = synthesize_corpus(tmp_path / "a", speakers=3, utterances=2, seed=5, progress=False)
    b = synthesize_corpus(tmp_path / "b", speakers=3, utterances=2, seed=5, progress=False)
    files = sorted(p.relative_to(a) for p in a.rglob("*.wav"))
    assert len(files) == 3 * len(EMOTIONS) * 2
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert (a / "metadata.csv").read_text() == (b / "metadata.csv").read_text()
    speakers = make_speakers(4, seed=5)
    assert len({round(s.f0) for s in speakers}) == 4 and {s.gender for s in speakers} == {"male", "female"}


@pytest.mark.fast
def test_emotions_differ_in_prosody_not_only_loudness():
    """Each clip is normalised like the model input: emotions must still differ (duration, spectrum)."""
    speaker = make_speakers(1, seed=0)[0]
    duration, brightness = {}, {}
    for emotion in EMOTIONS:
        clips = [synthesize_utterance(speaker, emotion, np.random.default_rng([0, k])) for k in range(6)]
        power = [np.abs(np.fft.rfft(c / c.std(), 16000)) ** 2 for c in clips]  # 1 Hz bins
        duration[emotion] = np.mean([c.size for c in clips]) / 16000
        brightness[emotion] = np.mean([p[1000:3000].sum() / p[:1000].sum() for p in power])
    assert duration["sad"] > duration["neutral"] > duration["angry"] > duration["happy"]  # tempo
    assert all(brightness["angry"] > 2 * brightness[e] for e in ("neutral", "happy", "sad"))  # tense voice


@pytest.mark.fast
def test_folder_reader_takes_labels_and_speakers(tmp_path):
    synthesize_corpus(tmp_path, speakers=3, utterances=1, seed=0, progress=False)
    kind, records = read_corpus("auto", tmp_path)
    assert kind == "folder"
    assert {r["label"] for r in records} == set(EMOTIONS)
    assert {r["speaker"] for r in records} == {"spk00", "spk01", "spk02"}
    assert all(r["label"] in r["path"] for r in records)


@pytest.mark.fast
def test_manifest_reader_and_missing_columns(tmp_path):
    for name in ("a.wav", "b.wav"):
        sf.write(tmp_path / name, np.zeros(1600, dtype=np.float32) + 0.1, 16000)
    (tmp_path / "manifest.csv").write_text("path,label,speaker\na.wav,happy,s1\nb.wav,sad,s2\n")
    kind, records = read_corpus("auto", tmp_path)
    assert kind == "csv"
    assert [(r["label"], r["speaker"]) for r in records] == [("happy", "s1"), ("sad", "s2")]
    (tmp_path / "manifest.csv").write_text("file,emotion\na.wav,happy\n")
    with pytest.raises(SerError, match="lacks column"):
        read_corpus("csv", tmp_path)


@pytest.mark.fast
def test_unknown_corpus_and_missing_dir(tmp_path):
    with pytest.raises(SerError, match="unknown corpus"):
        read_corpus("nosuch", tmp_path)
    with pytest.raises(SerError, match="not found"):
        read_corpus("auto", tmp_path / "missing")


def test_prepare_skips_and_reports_bad_files(tmp_path):
    corpus = tmp_path / "corpus"
    synthesize_corpus(corpus, speakers=4, utterances=3, seed=0, progress=False)
    (corpus / "happy" / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    (corpus / "sad" / "empty.wav").write_bytes(b"")
    sf.write(corpus / "angry" / "short.wav", np.full(100, 0.1, dtype=np.float32), 16000)
    summary = prepare([corpus], tmp_path / "out", PrepareConfig(architecture="wav2vec2"))
    reasons = {item["path"].rsplit("/", 1)[-1]: item["reason"] for item in summary["skipped"]}
    assert set(reasons) == {"corrupt.wav", "empty.wav", "short.wav"}
    assert "shorter than" in reasons["short.wav"]
    assert sum(s["clips"] for s in summary["splits"].values()) == 4 * len(EMOTIONS) * 3
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["skipped"] == summary["skipped"]
    dataset, labels, extractor = load_prepared(tmp_path / "out")
    row = dataset["train"].with_format("numpy")[0]
    assert abs(float(row["input_values"].mean())) < 1e-3 and abs(float(row["input_values"].std()) - 1) < 1e-2
    assert extractor.sampling_rate == 16000 and labels == sorted(EMOTIONS)


def test_prepare_stops_when_most_files_are_bad(tmp_path):
    corpus = tmp_path / "corpus"
    for i in range(4):
        (corpus / "happy").mkdir(parents=True, exist_ok=True)
        (corpus / "happy" / f"bad{i}.wav").write_bytes(b"junk")
    sf.write(corpus / "happy" / "good.wav", np.full(16000, 0.1, dtype=np.float32), 16000)
    with pytest.raises(SerError, match="4 of 5 files could not be used .*: 4 × unreadable audio"):
        prepare([corpus], tmp_path / "out", PrepareConfig())
    listed = json.loads((tmp_path / "out" / "problems.json").read_text())
    assert sorted(p["path"].rsplit("/", 1)[-1] for p in listed) == [f"bad{i}.wav" for i in range(4)]


def _manifest_corpus(root: Path) -> dict[str, list[str]]:
    """The demo corpus (4 speakers x 4 emotions x 2 clips) listed in a manifest.csv, plus rows with
    every problem a manifest can have; returns the problem rows' file names by class."""
    synthesize_corpus(root, speakers=4, utterances=2, seed=0, progress=False)
    metadata = csv.DictReader((root / "metadata.csv").read_text().splitlines())
    speakers = {row["file"]: row["speaker"] for row in metadata}
    rows = [(file, file.split("/")[0], speaker) for file, speaker in sorted(speakers.items())]
    clip = root / rows[0][0]
    (root / "extra").mkdir()
    for name in ("hapy.wav", "angery.wav", "calm.wav", "nolabel.wav"):
        shutil.copy(clip, root / "extra" / name)
    (root / "extra" / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    rows += [
        ("happy/gone.wav", "happy", "spk00"),  # missing
        ("nowhere/else.wav", "sad", "spk01"),  # missing
        ("extra/corrupt.wav", "angry", "spk02"),  # unreadable
        ("extra/hapy.wav", "Hapy", "spk00"),  # misspelled (case does not matter)
        ("extra/angery.wav", "angery", "spk01"),  # misspelled
        ("extra/nolabel.wav", "", "spk02"),  # no label
        ("extra/calm.wav", "calm", "spk03"),  # a real emotion, not among --labels
        (rows[1][0], rows[1][1], rows[1][2]),  # listed twice, same label
        (rows[2][0], "sad" if rows[2][1] != "sad" else "happy", rows[2][2]),  # conflicting labels
    ]
    with open(root / "manifest.csv", "w", newline="") as f:
        csv.writer(f).writerows([("path", "label", "speaker"), *rows])
    return {
        "missing": ["gone.wav", "else.wav"],
        "unreadable": ["corrupt.wav"],
        "misspelled": ["angery.wav", "hapy.wav"],
        "unlabelled": ["nolabel.wav"],
        "duplicate": [rows[1][0].rsplit("/", 1)[-1]],
        "conflicting": [rows[2][0].rsplit("/", 1)[-1]],
    }


def test_prepare_reports_every_problem_of_a_manifest(tmp_path, ser_here):
    expected = _manifest_corpus(tmp_path / "corpus")
    out = tmp_path / "out"
    done = ser_here(
        "prepare",
        "--corpus", "csv",
        "--data-dir", str(tmp_path / "corpus"),
        "--output-dir", str(out),
        "--labels", "angry,happy,neutral,sad",
        "--max-bad-fraction", "0.3",
    )  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    found: dict[str, list[str]] = {}
    for item in summary["skipped"]:
        found.setdefault(item["problem"], []).append(item["path"].rsplit("/", 1)[-1])
    assert {k: sorted(v) for k, v in found.items()} == {k: sorted(v) for k, v in expected.items()}
    assert {k: v["count"] for k, v in summary["problems"].items()} == {k: len(v) for k, v in expected.items()}
    assert summary["left_out_labels"] == {"calm": 1}
    assert summary["candidate_files"] == 32 - 1 + 7  # the good clips less the conflicting one, the bad rows
    report = (out / "report.txt").read_text()
    assert report.strip() in done.stdout.strip()  # printed, and kept beside the data
    assert "7 of 38 files left out (limit 30%):" in report
    for title, count in [
        ("missing file", 2),
        ("unreadable audio", 1),
        ("no label", 1),
        ("misspelled label", 2),
        ("conflicting labels", 1),
        ("listed twice (kept once)", 1),
    ]:
        assert re.search(rf"^  {re.escape(title)} +{count}  e\.g\. /", report, re.M), (title, report)
    assert "looks like a misspelling of 'happy'" in report and "not among --labels: calm (1)" in report
    dataset, labels, _ = load_prepared(out)
    paths = [p for split in dataset.values() for p in split["path"]]
    assert len(paths) == len(set(paths)) == 31 and labels == ["angry", "happy", "neutral", "sad"]
    names = {p.rsplit("/", 1)[-1] for p in paths}
    assert set(expected["duplicate"]) <= names  # kept once
    assert not names & {n for key, v in expected.items() if key != "duplicate" for n in v}


def test_misspelled_labels_without_a_label_list(tmp_path):
    rows = [
        {"path": str(tmp_path / f"{label}{i}.wav"), "label": label}
        for label in ("happy", "sad")
        for i in range(5)
    ]
    rows += [
        {"path": str(tmp_path / "x.wav"), "label": "hapy"},
        {"path": str(tmp_path / "y.wav"), "label": "frustrated"},
    ]
    for row in rows:
        Path(row["path"]).touch()
    audit = audit_records(rows, [])
    assert [(p["path"].rsplit("/", 1)[-1], p["problem"]) for p in audit.problems] == [("x.wav", "misspelled")]
    assert {r["label"] for r in audit.records} == {"happy", "sad", "frustrated"}  # a label of its own is kept
    with pytest.raises(SerError, match="did you mean sadd -> sad"):
        audit_records(rows, ["happy", "sadd"])


@pytest.mark.parametrize(
    "manifest, message",
    [
        (
            "path,label\ngone1.wav,happy\ngone2.wav,sad\n,sad\n",
            r"none of the 3 listed files can be used \(3 × missing file\)",
        ),
        ("path,label\na.wav,happy\nb.wav,happy\n", r"only one label \(happy\) among the usable files"),
        (
            "path,label\na.wav,happy\na.wav,sad\nb.wav,sad\n",
            "1 of 2 files could not be used .*1 × conflicting labels",
        ),
    ],
    ids=["nothing-usable", "one-label", "conflicts"],
)
def test_prepare_stops_with_one_line_where_nothing_sensible_is_left(tmp_path, manifest, message):
    for name in ("a.wav", "b.wav"):
        sf.write(tmp_path / name, np.full(8000, 0.1, dtype=np.float32), 16000)
    (tmp_path / "manifest.csv").write_text(manifest)
    with pytest.raises(SerError, match=message):
        prepare([tmp_path], tmp_path / "out", PrepareConfig())


def test_prepare_cli_stops_with_one_line_and_lists_the_problems(tmp_path, ser_here):
    for name in ("a.wav", "b.wav"):
        sf.write(tmp_path / name, np.full(8000, 0.1, dtype=np.float32), 16000)
    (tmp_path / "manifest.csv").write_text("path,label\na.wav,happy\nb.wav,sad\nc.wav,sad\nd.wav,happy\n")
    done = ser_here(
        "prepare", "--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "out"), check=False
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "2 of 4 files could not be used (limit 20%): 2 × missing file; first: " in lines[0]
    assert f"all are listed in {tmp_path / 'out' / 'problems.json'}" in lines[0]
    listed = json.loads((tmp_path / "out" / "problems.json").read_text())
    assert [(p["path"].rsplit("/", 1)[-1], p["problem"]) for p in listed] == [
        ("c.wav", "missing"),
        ("d.wav", "missing"),
    ]
