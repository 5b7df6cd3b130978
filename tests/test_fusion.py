"""The functionals head (`pipeline.fusion`): scikit-learn's logistic regression kept as safetensors +
JSON, its log-probabilities fused with the network's, and the calibration temperature, all applied
by `Predictor` (the one prediction path) from the checkpoint directory."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import LABELS, make_tiny_checkpoint, tone
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from pipeline.calibration import expected_calibration_error, negative_log_likelihood, softmax
from pipeline.config import load_config
from pipeline.data.prepared import load_prepared
from pipeline.errors import SerError
from pipeline.functionals import functionals
from pipeline.fusion import (
    EQUAL_SHARES,
    HEAD_C,
    HEAD_CONFIG,
    FunctionalsHead,
    fit_weight,
    fused_log_probabilities,
    log_softmax,
)
from pipeline.inference.evaluate import split_logits, split_targets
from pipeline.inference.predictor import TEMPERATURE_KEY, Predictor
from pipeline.metrics import classification_metrics
from pipeline.training.results import FunctionalsFits

SR = 16_000


def _data(classes: int, n: int = 60, width: int = 88, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    return (rng.normal(size=(n, width)) + 2.0 * np.eye(classes, width)[y]).astype(np.float32), y


def _sklearn_log_probabilities(x: np.ndarray, y: np.ndarray, queries: np.ndarray) -> np.ndarray:
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=HEAD_C, class_weight="balanced", max_iter=5000).fit(scaler.transform(x), y)
    return np.log(model.predict_proba(scaler.transform(queries)))


@pytest.mark.fast
@pytest.mark.parametrize("classes", [2, 4])
def test_the_head_is_scikit_learns_logistic_regression_kept_without_pickle(classes, tmp_path):
    x, y = _data(classes)
    head = FunctionalsHead.fit(x, y, classes, "egemaps", SR, weight=0.5)
    expected = _sklearn_log_probabilities(x, y, x[:10])
    np.testing.assert_allclose(log_softmax(head.scores(x[:10])), expected, atol=1e-4)
    head.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["functionals.json", "functionals.safetensors"]
    loaded = FunctionalsHead.load(tmp_path)
    np.testing.assert_array_equal(loaded.scores(x[:10]), head.scores(x[:10]))
    assert (loaded.feature_set, loaded.sampling_rate, loaded.weight) == ("egemaps", SR, 0.5)


@pytest.mark.fast
def test_a_class_without_training_clips_is_never_the_heads_answer():
    x, y = _data(3)
    head = FunctionalsHead.fit(x, y, 4, "egemaps", SR, weight=0.5)  # class 3 never seen
    scores = head.scores(np.random.default_rng(1).normal(size=(50, 88)).astype(np.float32))
    assert scores.shape == (50, 4) and not (scores.argmax(-1) == 3).any()


@pytest.mark.fast
def test_fusion_weighs_the_log_probabilities_of_network_and_head():
    waves = [tone(1.0, f0=f0) for f0 in (120.0, 240.0)]
    x, y = _data(4)
    head = FunctionalsHead.fit(x, y, 4, "egemaps", SR, weight=0.5)
    network = np.array([[2.0, 0.0, -1.0, 0.5], [0.0, 3.0, 0.0, 0.0]], dtype=np.float32)
    heard = head.log_probabilities(waves)
    np.testing.assert_allclose(heard, log_softmax(head.scores(functionals(waves, SR, "egemaps"))), atol=1e-6)
    expected = 0.5 * log_softmax(network) + 0.5 * heard
    np.testing.assert_allclose(fused_log_probabilities(network, heard, 0.5), expected, atol=1e-6)
    np.testing.assert_allclose(fused_log_probabilities(network, heard, 1.0), log_softmax(network), atol=1e-6)
    np.testing.assert_allclose(fused_log_probabilities(network, heard, 0.0), heard, atol=1e-6)


def _answers(targets: np.ndarray, classes: int, strength: float, seed: int) -> np.ndarray:
    """Logits that point at `targets` with `strength` above unit Gaussian noise."""
    rng = np.random.default_rng(seed)
    return strength * np.eye(classes)[targets] + rng.normal(size=(len(targets), classes))


@pytest.mark.fast
def test_the_fusion_weight_goes_to_the_source_that_knows_the_answer():
    y = np.arange(200) % 4
    knows, guesses = _answers(y, 4, 4.0, seed=0), _answers(y, 4, 0.0, seed=1)
    assert fit_weight(knows, log_softmax(guesses), y) > 0.9  # the network knows
    assert fit_weight(guesses, log_softmax(knows), y) < 0.1  # the head knows
    network, head = _answers(y, 4, 1.5, seed=2), log_softmax(_answers(y, 4, 2.5, seed=3))
    weight = fit_weight(network, head, y)
    assert 0.05 < weight < 0.95
    best = negative_log_likelihood(fused_log_probabilities(network, head, weight), y)
    for other in np.linspace(0, 1, 41):  # the minimum of the validation NLL, not only a local one
        assert best <= negative_log_likelihood(fused_log_probabilities(network, head, other), y) + 1e-6
    assert fit_weight(network[:0], head[:0], y[:0]) == EQUAL_SHARES  # no validation clips


@pytest.mark.fast
def test_a_clip_too_short_for_some_functionals_still_gets_finite_probabilities():
    x, y = _data(4)
    head = FunctionalsHead.fit(x, y, 4, "egemaps", SR, weight=0.5)
    short = tone(0.025)  # 400 samples: openSMILE fills its functionals with NaN
    assert np.isnan(functionals([short], SR, "egemaps")).any()
    heard = head.log_probabilities([short])
    assert np.isfinite(heard).all()
    np.testing.assert_allclose(heard[0], log_softmax(head.intercept[None])[0], atol=1e-5)  # the mean clip


@pytest.mark.fast
def test_a_head_that_does_not_fit_its_feature_set_is_refused(tmp_path):
    x, y = _data(4)
    FunctionalsHead.fit(x, y, 4, "egemaps", SR, weight=0.5).save(tmp_path)
    settings = json.loads((tmp_path / HEAD_CONFIG).read_text())
    (tmp_path / HEAD_CONFIG).write_text(json.dumps({**settings, "feature_set": "compare"}))
    with pytest.raises(SerError, match="does not fit its feature set 'compare'"):
        FunctionalsHead.load(tmp_path)
    (tmp_path / HEAD_CONFIG).write_text("{not json")
    with pytest.raises(SerError, match="unreadable functionals head"):
        FunctionalsHead.load(tmp_path)


def test_the_predictor_applies_the_checkpoints_head_and_temperature(tmp_path):
    checkpoint = make_tiny_checkpoint(tmp_path / "best")
    waves = [tone(1.0, f0=f0, seed=i) for i, f0 in enumerate((110.0, 150.0, 210.0, 300.0))]
    plain = Predictor.from_pretrained(checkpoint, precision="fp32")
    assert plain.head is None and plain.temperature == 1.0
    network = plain.logits(waves)
    x, y = _data(4)
    head = FunctionalsHead.fit(x, y, 4, "egemaps", SR, weight=0.6)
    head.save(checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps({**config, TEMPERATURE_KEY: 2.0}))
    fused = Predictor.from_pretrained(checkpoint, precision="fp32")
    assert fused.temperature == 2.0 and fused.labels == LABELS
    expected = fused_log_probabilities(network, head.log_probabilities(waves), 0.6) / 2.0
    np.testing.assert_allclose(fused.logits(waves), expected, atol=1e-5)
    np.testing.assert_array_equal(fused.network_logits(waves), network)  # the network's own, untouched
    probabilities = fused.probabilities(waves)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
    assert (probabilities.argmax(-1) == expected.argmax(-1)).all()
    again = Predictor.from_pretrained(checkpoint, precision="fp32")  # loaded anew: the same answers
    np.testing.assert_allclose(again.probabilities(waves), probabilities, atol=1e-6)


def test_a_head_for_other_labels_is_refused(tmp_path):
    checkpoint = make_tiny_checkpoint(tmp_path / "best")
    x, y = _data(3)
    FunctionalsHead.fit(x, y, 3, "egemaps", SR, weight=0.5).save(checkpoint)
    with pytest.raises(SerError, match="3 classes, not 4"):
        Predictor.from_pretrained(checkpoint, precision="fp32")


def test_training_fits_the_weight_on_validation_and_saves_the_head(trained, prepared):
    metrics, best = json.loads((trained / "metrics.json").read_text()), trained / "best"
    assert metrics["config"]["model"]["functionals_weight"] is None  # the default: fitted
    head = FunctionalsHead.load(best)
    assert 0 <= head.weight <= 1 and head.weight == metrics["functionals_weight"]
    dataset, labels, extractor = load_prepared(prepared, 0)
    setup = SimpleNamespace(
        cfg=load_config(None, [f"data.path={prepared}"]), fold=0, labels=labels, extractor=extractor
    )
    fits = FunctionalsFits(setup)
    test_waves = [row["input_values"] for row in dataset["test"].with_format("numpy")]
    np.testing.assert_allclose(  # the cached functionals are the clips' own, row for row
        fits.log_probabilities(head, "test"), head.log_probabilities(test_waves), atol=1e-4
    )
    network = Predictor.from_pretrained(best, precision="fp32")
    network.head, network.temperature = None, 1.0
    validation = dataset["validation"]
    refitted = fit_weight(
        split_logits(network, validation),
        fits.log_probabilities(fits.fit(("train",), 0.0), "validation"),
        split_targets(validation, labels),
    )
    assert refitted == pytest.approx(head.weight, abs=1e-3)


def test_training_reports_the_calibration_of_what_it_saved(trained, prepared):
    metrics = json.loads((trained / "metrics.json").read_text())
    best = trained / "best"
    config = json.loads((best / "config.json").read_text())
    calibration = metrics["calibration"]
    assert calibration["applied"] and config[TEMPERATURE_KEY] == calibration["temperature"]  # the default
    test = load_prepared(prepared, 0)[0]["test"]
    predictor = Predictor.from_pretrained(best, precision="fp32")
    logits, targets = split_logits(predictor, test), split_targets(test, predictor.labels)
    assert metrics["test"]["uar"] == pytest.approx(
        classification_metrics(targets, logits.argmax(-1), predictor.labels)["uar"]
    )
    logits = logits * calibration["temperature"]  # the answer's logits without the temperature
    assert calibration["test"]["ece_before"] == pytest.approx(
        expected_calibration_error(softmax(logits), targets, calibration["bins"]), abs=1e-4
    )
    assert calibration["test"]["ece_after"] == pytest.approx(
        expected_calibration_error(softmax(logits, calibration["temperature"]), targets, calibration["bins"]),
        abs=1e-4,
    )
    assert (trained / "best" / "reliability.png").read_bytes()[:4] == b"\x89PNG"
