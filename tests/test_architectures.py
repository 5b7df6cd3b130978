"""The small model's architecture is one setting: the default wav2vec2-bert (log-mel filter banks,
conformer) and `model.architecture=wav2vec2` (raw waveform) go through prepare, training,
evaluation and prediction alike; data prepared for one is refused by the other in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.data.prepare import prepare
from pipeline.data.prepare_config import PrepareConfig
from pipeline.data.prepared import load_prepared
from pipeline.data.synth import synthesize_corpus
from pipeline.errors import ConfigError
from pipeline.inference.evaluate import evaluate_checkpoint
from pipeline.training.run import train


def test_the_waveform_model_is_one_setting_away(tmp_path):
    corpus = synthesize_corpus(tmp_path / "corpus", speakers=4, utterances=2, seed=0, progress=False)
    data = tmp_path / "data"
    prepare([corpus], data, PrepareConfig(architecture="wav2vec2"))
    wave = np.asarray(load_prepared(data)[0]["train"][0]["input_values"])
    assert abs(wave.std() - 1) < 1e-2  # wav2vec2's extractor normalised it; log-mel data keeps it as decoded

    overrides = [f"data.path={data}", f"train.output_dir={tmp_path / 'run'}", "train.epochs=1"]
    with pytest.raises(
        ConfigError, match="prepared for another feature extractor.*--architecture wav2vec2-bert`"
    ):
        train(load_config(None, overrides))  # the default log-mel model on waveform data: refused
    results = train(load_config(None, [*overrides, "model.architecture=wav2vec2", "train.report_to=[]"]))
    assert results["parameters"] > 100_000 and "baselines" in results
    best = tmp_path / "run" / "best"
    assert json.loads((best / "config.json").read_text())["model_type"] == "wav2vec2"
    evaluated = evaluate_checkpoint(best, data)
    assert {k: evaluated[k] for k in ("accuracy", "uar")} == {
        k: results["test"][k] for k in ("accuracy", "uar")
    }
