"""Demo corpus, corpus reading and preprocessing with bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from pipeline.corpora import read_corpus
from pipeline.errors import SerError
from pipeline.features import PrepareConfig, load_prepared, prepare
from pipeline.synth import EMOTIONS, make_speakers, synthesize_corpus, synthesize_utterance


def test_synth_is_deterministic_and_varied(tmp_path):
    a = synthesize_corpus(tmp_path / "a", speakers=3, utterances=2, seed=5, progress=False)
    b = synthesize_corpus(tmp_path / "b", speakers=3, utterances=2, seed=5, progress=False)
    files = sorted(p.relative_to(a) for p in a.rglob("*.wav"))
    assert len(files) == 3 * len(EMOTIONS) * 2
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert (a / "metadata.csv").read_text() == (b / "metadata.csv").read_text()
    speakers = make_speakers(4, seed=5)
    assert len({round(s.f0) for s in speakers}) == 4 and {s.gender for s in speakers} == {"male", "female"}


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


def test_folder_reader_takes_labels_and_speakers(tmp_path):
    synthesize_corpus(tmp_path, speakers=3, utterances=1, seed=0, progress=False)
    kind, records = read_corpus("auto", tmp_path)
    assert kind == "folder"
    assert {r["label"] for r in records} == set(EMOTIONS)
    assert {r["speaker"] for r in records} == {"spk00", "spk01", "spk02"}
    assert all(r["label"] in r["path"] for r in records)


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
    summary = prepare([corpus], tmp_path / "out", PrepareConfig())
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
    with pytest.raises(SerError, match="could not be used"):
        prepare([corpus], tmp_path / "out", PrepareConfig())
