"""`ser baseline`: the classical references every model is reported against: utterance-level
functionals (`pipeline.functionals`: openSMILE ComParE_2016 by default, eGeMAPSv02, or MFCC
statistics) and a linear SVM (scikit-learn's `LinearSVC`, C = 0.01, class-balanced: the ComParE
challenges' recipe), fitted on a fold's training and validation speakers and scored on its test
speakers.

It takes seconds once the functionals are cached, needs no GPU and no pretrained weights: a model
that does not beat it has not learned what signal processing and a linear model already know.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from ..data.functionals_cache import table_functionals
from ..data.prepared import DATASET_DIR, fold_plan, open_metadata
from ..functionals import FEATURE_SETS
from ..metrics import classification_metrics

SVM_C = 0.01
CLASSIFIER = f"linear SVM (C={SVM_C:g}, class-balanced)"
REPORTED = ("compare", "mfcc")  # every training report's baselines, the strongest first


def svm():
    """Standardised features, then a class-balanced linear SVM."""
    return make_pipeline(
        StandardScaler(), LinearSVC(C=SVM_C, class_weight="balanced", max_iter=20_000, random_state=0)
    )


def fit_and_score(features: dict[str, np.ndarray], targets: dict[str, np.ndarray], labels: list[str]) -> dict:
    """Fit on `train` and `validation` together, score `test`: {"test": metrics}."""
    seen = [split for split in ("train", "validation") if len(targets[split])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # tiny or separable data: still a valid fit
        model = svm().fit(
            np.concatenate([features[s] for s in seen]), np.concatenate([targets[s] for s in seen])
        )
    if not len(targets["test"]):
        return {}
    return {"test": classification_metrics(targets["test"], model.predict(features["test"]), labels)}


def fold_targets(data_dir, fold: int) -> tuple[dict[str, list[int]], np.ndarray, list[str]]:
    """({split: table rows} of `fold`, the class id of every row of the prepared table, labels)."""
    rows, labels = fold_plan(data_dir, fold)
    names = open_metadata(Path(data_dir) / DATASET_DIR)["label"]
    index = {label: i for i, label in enumerate(labels)}
    return rows, np.array([index[name] for name in names], dtype=np.int64), labels


def baseline_metrics(data_dir, fold: int = 0, feature_set: str = "compare", num_proc: int = 1) -> dict:
    """The baseline of `feature_set` on a fold of prepared data: {"features", "classifier", "test"}."""
    table = table_functionals(data_dir, feature_set, num_proc)
    rows, targets, labels = fold_targets(data_dir, fold)
    found = fit_and_score(
        {split: table[r] for split, r in rows.items()},
        {split: targets[r] for split, r in rows.items()},
        labels,
    )
    return {"features": FEATURE_SETS[feature_set], "classifier": CLASSIFIER, **found}


def reported_baselines(data_dir, fold: int = 0) -> dict[str, dict]:
    """{feature set: `baseline_metrics`} of the baselines every report holds (`REPORTED`)."""
    return {name: baseline_metrics(data_dir, fold, name) for name in REPORTED}
