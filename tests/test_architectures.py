"""The small model's architecture is one setting: `model.architecture=wav2vec2-bert` (log-mel filter
banks, conformer) goes through prepare, training, evaluation and prediction like the default."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.config import PrepareConfig, load_config
from pipeline.data.prepare import prepare
from pipeline.data.prepared import load_prepared
from pipeline.data.synth import synthesize_corpus
from pipeline.errors import ConfigError, SerError
from pipeline.inference.evaluate import evaluate_checkpoint
from pipeline.training.probe import train_probe
from pipeline.training.run import train


def test_a_log_mel_model_trains_and_evaluates_like_the_default(tmp_path):
    corpus = synthesize_corpus(tmp_path / "corpus", speakers=4, utterances=2, seed=0, progress=False)
    data = tmp_path / "data"
    prepare([corpus], data, PrepareConfig(architecture="wav2vec2-bert"))
    splits = load_prepared(data)[0]
    wave = np.asarray(splits["train"][0]["input_values"])
    assert abs(wave.std() - 1) > 0.1  # the decoded waveform is kept (features come per batch)

    overrides = [f"data.path={data}", f"train.output_dir={tmp_path / 'run'}", "train.epochs=1"]
    with pytest.raises(ConfigError, match="prepared for another feature extractor.*--architecture wav2vec2`"):
        train(load_config(None, overrides))  # the default wav2vec2 on log-mel data: refused in one line
    results = train(load_config(None, [*overrides, "model.architecture=wav2vec2-bert", "train.report_to=[]"]))
    assert results["parameters"] > 100_000 and "baseline" in results
    best = tmp_path / "run" / "best"
    assert json.loads((best / "config.json").read_text())["model_type"] == "wav2vec2-bert"
    with pytest.raises(SerError, match="ser probe reads models of the waveform"):
        train_probe(load_config(None, [*overrides, "model.architecture=wav2vec2-bert"]))
    evaluated = evaluate_checkpoint(best, data)
    assert {k: evaluated[k] for k in ("accuracy", "uar")} == {
        k: results["test"][k] for k in ("accuracy", "uar")
    }
