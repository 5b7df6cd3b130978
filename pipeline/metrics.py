"""Classification metrics as a Hugging Face `evaluate` metric."""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """Speech-emotion-recognition scores from one confusion matrix: accuracy, UAR (unweighted
average recall, the usual headline number for SER), macro-F1, and per-class precision, recall and F1."""


class EmotionMetrics(evaluate.Metric):
    """`evaluate` metric: `EmotionMetrics().compute(predictions=ids, references=ids, labels=names)`."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description="predictions and references: class ids; labels: the class names in id order",
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, labels: list[str]) -> dict:
        k = len(labels)
        cm = np.zeros((k, k), dtype=np.int64)
        np.add.at(cm, (np.asarray(references, dtype=np.int64), np.asarray(predictions, dtype=np.int64)), 1)
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


def classification_metrics(y_true, y_pred, labels: list[str]) -> dict:
    """accuracy, UAR, macro-F1, per-class scores and the confusion matrix (through `EmotionMetrics`)."""
    return EmotionMetrics(keep_in_memory=True).compute(
        predictions=np.asarray(y_pred), references=np.asarray(y_true), labels=list(labels)
    )
