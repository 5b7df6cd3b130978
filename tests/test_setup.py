"""The training set-up is written once: `--overfit-batches`, `ser lr-find` and the training loop start
from the same seed, data, model, first batch and loss (class weights included)."""

from __future__ import annotations

import json
import re

import pytest

from pipeline.config import load_config
from pipeline.data.prepare import prepare
from pipeline.data.prepare_config import PrepareConfig
from pipeline.data.synth import synthesize_corpus
from pipeline.errors import SerError
from pipeline.training.lr_find import lr_range_test
from pipeline.training.run import _say_what_to_expect
from pipeline.training.sanity import overfit_batches


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory):
    """Prepared data with 3 neutral clips for every sad one: balanced class weights are not 1."""
    root = tmp_path_factory.mktemp("imbalanced")
    corpus = synthesize_corpus(root / "corpus", speakers=5, utterances=3, seed=0, progress=False)
    for path in (corpus / "sad").glob("*.wav"):
        if not path.stem.endswith("_000"):
            path.unlink()
    prepare([corpus], root / "data", PrepareConfig(labels=["neutral", "sad"]))
    return root / "data"


def _first_overfit_loss(cfg) -> float:
    """The loss of the first step of `--overfit-batches` (one step: too few to overfit, so it says so)."""
    with pytest.raises(SerError, match=r"could not overfit") as err:
        overfit_batches(cfg, batches=1, max_steps=1)
    return float(re.search(r"loss ([\d.]+) ->", str(err.value))[1])


def test_overfit_and_lr_find_share_the_set_up_and_the_weighted_loss(imbalanced):
    overrides = [f"data.path={imbalanced}", "train.batch_size=8", "data.max_train_seconds=1.0"]
    balanced = load_config(None, [*overrides, "train.class_weights=balanced"])
    unweighted = load_config(None, [*overrides, "train.class_weights=none"])
    first = _first_overfit_loss(balanced)
    assert first != pytest.approx(_first_overfit_loss(unweighted), abs=1e-3)  # the weights are in the loss
    # lr-find's first loss comes before its first step: the same model, batch and weighted loss
    sweep = lr_range_test(balanced, steps=10)
    assert sweep["raw_losses"][0] == pytest.approx(first, abs=1e-3)


def test_real_speech_without_a_pretrained_backbone_gets_one_line_of_advice(imbalanced, tmp_path, capsys):
    assert json.loads((imbalanced / "summary.json").read_text())["synthetic"] is True  # `ser synth`'s
    _say_what_to_expect(load_config(None, [f"data.path={imbalanced}"]))
    assert capsys.readouterr().out == ""
    real = tmp_path / "real"
    real.mkdir()
    (real / "summary.json").write_text(json.dumps({"synthetic": False}))
    _say_what_to_expect(load_config(None, [f"data.path={real}"]))
    advice = capsys.readouterr().out
    assert advice.count("\n") == 1 and "--backbone facebook/wav2vec2-base" in advice
    _say_what_to_expect(load_config(None, [f"data.path={real}", "model.backbone=facebook/wav2vec2-base"]))
    assert capsys.readouterr().out == ""
