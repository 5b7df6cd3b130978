"""Classification metrics from one confusion matrix (NumPy arithmetic, checked against scikit-learn),
also as a Hugging Face `evaluate` module for the final reports."""

from __future__ import annotations

import functools

import numpy as np

_DESCRIPTION = """Speech-emotion-recognition scores from one confusion matrix: accuracy, UAR (unweighted
average recall, the usual headline number for SER), macro-F1, and per-class precision, recall and F1."""


def classification_metrics(y_true, y_pred, labels: list[str]) -> dict:
    """accuracy, UAR (unweighted average recall), macro-F1, per-class precision/recall/F1 and the
    confusion matrix of class ids `y_true` vs `y_pred`."""
    k = len(labels)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    hits = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    recall = np.divide(hits, support, out=np.zeros(k), where=support > 0)
    precision = np.divide(hits, predicted, out=np.zeros(k), where=predicted > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros(k), where=denominator > 0)
    return {
        "accuracy": float(hits.sum() / max(cm.sum(), 1)),
        "uar": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "samples": int(cm.sum()),
        "labels": list(labels),
        "confusion_matrix": cm.tolist(),
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)
        },
    }


def spread(values: list[float]) -> dict:
    """Mean and (population) standard deviation of per-fold figures, with the figures."""
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "folds": [float(v) for v in values]}


def fold_summary(tests: list[dict]) -> dict:
    """Mean and spread over folds of the test accuracy, UAR and macro-F1."""
    return {key: spread([test[key] for test in tests]) for key in ("accuracy", "uar", "macro_f1")}


def seed_summary(tests: list[list[dict]]) -> dict:
    """Over seeds (`tests[seed][fold]`: test metrics): for accuracy, UAR and macro-F1, each seed's
    mean over folds, their mean and standard deviation, and fold by fold the mean and the standard
    deviation between seeds."""
    summary = {}
    for key in ("accuracy", "uar", "macro_f1"):
        table = np.array([[test[key] for test in folds] for folds in tests])  # seeds x folds
        per_seed = table.mean(axis=1)
        summary[key] = {
            "mean": float(per_seed.mean()),
            "std_over_seeds": float(per_seed.std()),
            "per_seed": per_seed.tolist(),
            "folds": table.mean(axis=0).tolist(),
            "fold_std_over_seeds": table.std(axis=0).tolist(),
        }
    return summary


@functools.cache
def _emotion_metrics() -> type:
    """The `evaluate.Metric` class, made on first use: `import evaluate` also imports
    `transformers.pipelines`, seconds of start-up that validation during training does not need."""
    import datasets
    import evaluate

    class EmotionMetrics(evaluate.Metric):
        """`EmotionMetrics().compute(predictions=ids, references=ids, labels=names)`."""

        def _info(self) -> evaluate.MetricInfo:
            return evaluate.MetricInfo(
                description=_DESCRIPTION,
                citation="",
                inputs_description="predictions, references: class ids; labels: the class names in id order",
                features=datasets.Features(
                    {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
                ),
            )

        def _compute(self, predictions, references, labels: list[str]) -> dict:
            return classification_metrics(references, predictions, labels)

    return EmotionMetrics


def evaluate_predictions(y_true, y_pred, labels: list[str]) -> dict:
    """`classification_metrics` computed through `evaluate`."""
    return _emotion_metrics()(keep_in_memory=True).compute(
        predictions=np.asarray(y_pred), references=np.asarray(y_true), labels=list(labels)
    )
