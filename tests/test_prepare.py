"""Preprocessing: the per-file decode cache, trimming, the long-clip policy, several corpora, folds."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from conftest import ser

import pipeline.data.prepare as features
from pipeline.config import load_config
from pipeline.data.audio import trim_silence
from pipeline.data.prepare import prepare
from pipeline.data.prepare_config import DecodeConfig, PrepareConfig
from pipeline.data.prepared import load_prepared
from pipeline.data.splits import SplitConfig
from pipeline.data.synth import synthesize_corpus
from pipeline.inference.predictor import TEMPERATURE_KEY
from pipeline.training.jobs import LOG_FILE, ONE_THREAD
from pipeline.training.run import train


@pytest.fixture()
def decoded_files(monkeypatch) -> list[str]:
    """Records every path that goes through the decoder (num_proc=1 keeps it in this process)."""
    seen: list[str] = []
    original = features._decode_batch

    def counting(batch, rank, extractor, cfg):
        seen.extend(batch["path"])
        return original(batch, rank, extractor, cfg)

    monkeypatch.setattr(features, "_decode_batch", counting)
    return seen


def test_same_settings_decode_nothing_and_changes_decode_only_what_changed(tmp_path, decoded_files):
    corpus = synthesize_corpus(tmp_path / "c", speakers=4, utterances=2, seed=0, progress=False)
    out = tmp_path / "out"
    first = prepare([corpus], out, PrepareConfig())
    assert len(decoded_files) == 32

    decoded_files.clear()
    written = (out / "dataset").stat().st_mtime_ns
    assert prepare([corpus], out, PrepareConfig()) == first  # nothing changed: nothing is redone
    assert (out / "dataset").stat().st_mtime_ns == written
    again = prepare([corpus], out, PrepareConfig(splits=SplitConfig(seed=7)))
    assert decoded_files == []  # a new split is not a new decoding
    assert again["labels"] == first["labels"]

    sf.write(corpus / "happy" / "extra.wav", np.full(8000, 0.1, dtype=np.float32), 16000)
    prepare([corpus], out, PrepareConfig())
    assert [p.rsplit("/", 1)[-1] for p in decoded_files] == ["extra.wav"]

    decoded_files.clear()
    prepare([corpus], out, PrepareConfig(decode=DecodeConfig(trim_silence=True)))
    assert len(decoded_files) == 33  # other decoding settings: everything again
    assert len(list((out / "cache").iterdir())) == 1  # the superseded cache is gone
    stored = sorted(p.name for p in next((out / "cache").iterdir()).iterdir())
    assert stored == ["part-00000.arrow"]  # one part per decoding run, no stray copies
    assert not list(out.glob("*.arrow"))


def test_trim_silence_and_long_clip_policy(tmp_path):
    voiced = 0.3 * np.sin(np.arange(16000) / 5).astype(np.float32)
    padded = np.concatenate([np.zeros(8000), voiced, np.zeros(8000)]).astype(np.float32)
    assert trim_silence(padded, 16000).size == 16000
    root = tmp_path / "c"
    for i, label in enumerate(["a", "b", "c"] * 2):
        (root / label).mkdir(parents=True, exist_ok=True)
        sf.write(root / label / f"{i}.wav", padded if i else np.tile(voiced, 5), 16000)
    trimmed = prepare(
        [root], tmp_path / "t", PrepareConfig(decode=DecodeConfig(trim_silence=True, max_seconds=4))
    )
    dataset, _, _ = load_prepared(tmp_path / "t")
    durations = sorted(d for split in dataset.values() for d in split["duration"])
    assert durations == pytest.approx([1.0] * 5 + [4.0])  # trimmed, and the 5 s clip cropped to 4 s
    assert trimmed["skipped"] == []
    skipping = PrepareConfig(decode=DecodeConfig(max_seconds=4, long_clips="skip"))
    summary = prepare([root], tmp_path / "s", skipping)
    assert [s["reason"] for s in summary["skipped"]] == ["longer than 4 s"]


def test_several_corpora_in_one_run(tmp_path):
    a = synthesize_corpus(tmp_path / "a", speakers=3, utterances=1, seed=0, progress=False)
    b = synthesize_corpus(tmp_path / "b", speakers=3, utterances=1, seed=1, progress=False)
    summary = prepare([a, b], tmp_path / "out", PrepareConfig(labels=["happy", "sad"]))
    assert summary["corpora"] == ["folder", "folder2"] and summary["labels"] == ["happy", "sad"]
    speakers = {s for split in summary["splits"].values() for s in split["speaker_ids"]}
    assert len(speakers) == 6 and {s.split(":")[0] for s in speakers} == {"folder", "folder2"}


def test_k_fold_training_reports_mean_and_spread(tmp_path):
    corpus = synthesize_corpus(tmp_path / "c", speakers=6, utterances=1, seed=0, progress=False)
    prepare([corpus], tmp_path / "data", PrepareConfig(splits=SplitConfig(folds="3")))
    tested = []
    for fold in range(3):
        dataset, _, _ = load_prepared(tmp_path / "data", fold)
        tested += dataset["test"]["path"]
    assert sorted(tested) == sorted(str(p) for p in corpus.rglob("*.wav"))  # each clip tested once
    overrides = ["train.epochs=1", "train.batch_size=8", "train.calibrate=false"]
    data = tmp_path / "data"
    cfg = load_config(None, [f"data.path={data}", f"train.output_dir={tmp_path / 'run'}", *overrides])
    results = train(cfg, jobs=3)  # on a CPU: three worker processes, one thread each
    assert all((tmp_path / "run" / f"fold{i}" / LOG_FILE).is_file() for i in range(3))
    cv = json.loads((tmp_path / "run" / "cv_metrics.json").read_text())
    assert len(results["folds"]) == 3 and len(cv["uar"]["folds"]) == 3
    assert cv["uar"]["mean"] == pytest.approx(np.mean(cv["uar"]["folds"]))
    for name in ("compare", "mfcc"):
        baselines = [run["baselines"][name]["test"]["uar"] for run in results["folds"]]
        assert cv["baselines_uar"][name]["folds"] == pytest.approx(baselines)  # both, fold by fold
    assert cv["calibration"]["ece_after"]["folds"] == pytest.approx(
        [run["calibration"]["test"]["ece_after"] for run in results["folds"]]
    )
    for i, run in enumerate(results["folds"]):  # measured, not applied
        config = json.loads((tmp_path / "run" / f"fold{i}" / "best" / "config.json").read_text())
        assert not run["calibration"]["applied"] and config[TEMPERATURE_KEY] == 1.0
    card = cv["protocol"]
    assert card["chance_uar"] == pytest.approx(1 / len(card["labels"])) and len(card["folds"]) == 3
    assert not card["test_speakers_seen_in_training"]
    assert sorted(s for fold in card["folds"] for s in fold["test"]["speakers"]) == sorted(
        {p.stem.split("_")[0] for p in corpus.rglob("*.wav")}
    )  # every speaker tested once
    assert all((tmp_path / "run" / f"fold{i}" / "best" / "model.safetensors").is_file() for i in range(3))
    alone = tmp_path / "alone"  # fold 1 again, alone in a process on one thread: the same run
    ser("train", "--data", str(data), "--output-dir", str(alone), "--fold", "1", *overrides, env=ONE_THREAD)
    pooled = json.loads((tmp_path / "run" / "fold1" / "metrics.json").read_text())
    assert json.loads((alone / "metrics.json").read_text())["test"] == pooled["test"]
    weights = "best/model.safetensors"
    assert (alone / weights).read_bytes() == (tmp_path / "run" / "fold1" / weights).read_bytes()
