"""Classification metrics from one confusion matrix (NumPy arithmetic, checked against scikit-learn)."""

from __future__ import annotations

import numpy as np


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
