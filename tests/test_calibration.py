"""Temperature scaling: the ECE against constructed and hand-computed cases, the fitted temperature
against a known one, the effect of scaling on predictions, ECE and NLL, and the reliability diagram."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.calibration import (
    T_MIN,
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability_bins,
    softmax,
)
from pipeline.plots import plot_reliability


def two_class(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities [c, 1 - c] (class 0 predicted) and targets that make each prediction (in)correct."""
    probabilities = np.stack([confidence, 1 - confidence], axis=1)
    return probabilities, np.where(correct, 0, 1)


def sampled(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """Class ids drawn from softmax(`logits / temperature`)."""
    cumulative = softmax(logits, temperature).cumsum(axis=1)
    return np.minimum((rng.random((len(logits), 1)) > cumulative).sum(axis=1), logits.shape[1] - 1)


@pytest.mark.fast
def test_ece_of_perfectly_calibrated_data_is_zero():
    confidence = np.repeat([0.55, 0.65, 0.75, 0.85, 0.95], 100)
    # in each group of 100 with confidence c, exactly 100 c are right
    correct = np.concatenate([np.arange(100) < round(100 * c) for c in (0.55, 0.65, 0.75, 0.85, 0.95)])
    probabilities, targets = two_class(confidence, correct)
    assert expected_calibration_error(probabilities, targets) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.fast
def test_ece_of_over_confident_data():
    probabilities, targets = two_class(np.full(1000, 0.99), np.arange(1000) % 5 < 3)  # 60 % right
    assert expected_calibration_error(probabilities, targets) == pytest.approx(0.39, abs=1e-9)


@pytest.mark.fast
def test_ece_matches_hand_computation_with_two_bins():
    probabilities = np.array(
        [
            [0.40, 0.35, 0.25],  # conf 0.40, right   -> bin (0, 0.5]
            [0.30, 0.45, 0.25],  # conf 0.45, wrong   -> bin (0, 0.5]
            [0.90, 0.05, 0.05],  # conf 0.90, right   -> bin (0.5, 1]
            [0.20, 0.70, 0.10],  # conf 0.70, wrong   -> bin (0.5, 1]
            [0.10, 0.10, 0.80],  # conf 0.80, right   -> bin (0.5, 1]
        ]
    )
    targets = np.array([0, 0, 0, 2, 2])
    # low bin: 2/5 * |1/2 - 0.425| = 0.03; high bin: 3/5 * |2/3 - 0.8| = 0.08
    assert expected_calibration_error(probabilities, targets, bins=2) == pytest.approx(0.11)
    low, high = reliability_bins(probabilities, targets, bins=2)
    assert (low["lower"], low["upper"], low["count"]) == (0.0, 0.5, 2)
    assert low["accuracy"] == pytest.approx(0.5) and low["confidence"] == pytest.approx(0.425)
    assert (high["lower"], high["upper"], high["count"]) == (0.5, 1.0, 3)
    assert high["accuracy"] == pytest.approx(2 / 3) and high["confidence"] == pytest.approx(0.8)


@pytest.mark.fast
def test_bins_are_closed_on_the_right():
    probabilities, targets = two_class(np.array([0.5, 0.5, 1.0]), np.array([True, False, True]))
    rows = reliability_bins(probabilities, targets, bins=2)
    assert [(row["lower"], row["upper"], row["count"]) for row in rows] == [(0.0, 0.5, 2), (0.5, 1.0, 1)]


@pytest.mark.fast
def test_empty_input():
    empty_p, empty_y = np.zeros((0, 4)), np.zeros(0, dtype=np.int64)
    assert expected_calibration_error(empty_p, empty_y) == 0.0
    assert reliability_bins(empty_p, empty_y) == []
    assert fit_temperature(empty_p, empty_y) == 1.0


@pytest.mark.fast
def test_softmax_is_stable_and_normalised():
    probabilities = softmax(np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]]), temperature=0.5)
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    np.testing.assert_allclose(probabilities[1], np.exp([2, 4, 6]) / np.exp([2, 4, 6]).sum())


@pytest.mark.fast
def test_fit_temperature_recovers_known_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(20000, 4))
    targets = sampled(logits, 2.5, rng)
    assert fit_temperature(logits, targets) == pytest.approx(2.5, rel=0.10)


@pytest.mark.fast
def test_temperature_keeps_predictions():
    logits = np.random.default_rng(1).normal(scale=5.0, size=(500, 6))
    for temperature in (0.05, 0.3, 1.0, 2.5, 20.0):
        np.testing.assert_array_equal(softmax(logits, temperature).argmax(axis=1), logits.argmax(axis=1))


@pytest.mark.fast
def test_scaling_an_over_confident_model_lowers_ece_and_nll():
    rng = np.random.default_rng(2)
    calibrated = rng.normal(scale=1.5, size=(6000, 4))
    targets = sampled(calibrated, 1.0, rng)
    over_confident = 4 * calibrated
    validation, test = slice(0, 3000), slice(3000, None)
    temperature = fit_temperature(over_confident[validation], targets[validation])
    assert temperature > 1
    assert temperature == pytest.approx(4.0, rel=0.15)
    report = calibration_report(
        {"validation": over_confident[validation], "test": over_confident[test]},
        {"validation": targets[validation], "test": targets[test]},
        temperature,
    )
    assert (report["temperature"], report["bins"]) == (temperature, 15)
    for split in ("validation", "test"):
        scores = report[split]
        assert scores["samples"] == 3000
        assert scores["ece_after"] < scores["ece_before"]
        assert scores["nll_after"] < scores["nll_before"]
    assert report["test"]["nll_before"] == pytest.approx(
        negative_log_likelihood(over_confident[test], targets[test]), abs=1e-4
    )


@pytest.mark.fast
def test_plot_reliability_writes_png(tmp_path):
    rng = np.random.default_rng(3)
    logits = 3 * rng.normal(size=(300, 4))
    targets = sampled(logits / 3, 1.0, rng)
    path = tmp_path / "reliability.png"
    plot_reliability(logits, targets, 3.0, path, title="test")
    data = path.read_bytes()
    assert len(data) > 1000
    assert data[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.fast
def test_a_validation_split_answered_all_right_sharpens_at_most_to_the_floor():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 4, 200)
    logits = rng.normal(size=(200, 4)) + 3.0 * np.eye(4)[targets]  # every argmax right, with a margin
    logits[np.arange(200), targets] = logits.max(axis=1) + 1.0
    assert fit_temperature(logits, targets) == pytest.approx(T_MIN, abs=1e-3)
