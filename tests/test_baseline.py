"""`ser baseline`: MFCC statistics and a logistic regression on the prepared (speaker-independent)
splits, reported beside every trained model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import recall_score
from sklearn.preprocessing import StandardScaler

from pipeline.data.prepared import fold_count, load_prepared
from pipeline.training.baseline import C_GRID, N_MFCC, fit_and_score, mfcc_statistics

LABELS = ["a", "b", "c"]


def _blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return rng.normal(size=(n, 8)) + 1.5 * np.eye(3, 8)[y], y


@pytest.mark.fast
def test_the_classifier_is_scikit_learns_logistic_regression_chosen_on_validation():
    split = dict(zip(("train", "validation", "test"), (_blobs(n, s) for n, s in ((90, 0), (30, 1), (30, 2)))))
    features, targets = {k: v[0] for k, v in split.items()}, {k: v[1] for k, v in split.items()}
    found = fit_and_score(features, targets, LABELS)

    def uar(c: float, on: str) -> tuple[float, np.ndarray]:
        scaler = StandardScaler().fit(features["train"])
        model = LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(
            scaler.transform(features["train"]), targets["train"]
        )
        predicted = model.predict(scaler.transform(features[on]))
        return recall_score(targets[on], predicted, average="macro"), predicted

    best = max(C_GRID, key=lambda c: uar(c, "validation")[0])  # the first of equals, as ours
    assert found["C"] == best
    assert found["validation"]["uar"] == pytest.approx(uar(best, "validation")[0])
    test_uar, predicted = uar(best, "test")
    assert found["test"]["uar"] == pytest.approx(test_uar)
    assert found["test"]["accuracy"] == pytest.approx(np.mean(predicted == targets["test"]))
    assert found["test"]["uar"] > 0.6  # the blobs are learnable: the fit is real


@pytest.mark.fast
def test_mfcc_statistics_describe_the_voice():
    sr, t = 16_000, np.arange(16_000) / 16_000
    low, high = np.sin(2 * np.pi * 120 * t), np.sin(2 * np.pi * 240 * t) * np.linspace(0, 1, t.size)
    rows = mfcc_statistics([low, high, low.astype(np.float32)], sr)
    assert rows.shape == (3, 6 * N_MFCC) and np.isfinite(rows).all()
    assert np.allclose(rows[0], rows[2], atol=1e-4)  # a function of the clip only
    assert not np.allclose(rows[0], rows[1], atol=1e-2)


def test_ser_baseline_scores_held_out_speakers_on_every_fold(prepared, ser_here):
    done = json.loads(ser_here("baseline", "--data", str(prepared), "--folds", "--json").stdout)
    assert len(done["folds"]) == fold_count(prepared)
    for fold, run in enumerate(done["folds"]):
        dataset = load_prepared(prepared, fold)[0]
        assert run["test"]["samples"] == len(dataset["test"])
        assert not set(dataset["test"]["speaker"]) & set(dataset["train"]["speaker"])  # held out
    assert done["cross_validation"]["uar"]["mean"] == pytest.approx(
        np.mean([run["test"]["uar"] for run in done["folds"]])
    )


def test_every_training_report_holds_the_baseline_of_its_split(trained, prepared, ser_here):
    metrics = json.loads((trained / "metrics.json").read_text())
    alone = json.loads(ser_here("baseline", "--data", str(prepared), "--json").stdout)
    assert metrics["baseline"]["test"] == alone["test"]  # the same split, the same numbers
    card = (trained / "best" / "README.md").read_text()
    assert "classical baseline" in card and f"{alone['test']['uar']:.3f}" in card
