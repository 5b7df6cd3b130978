"""The same metrics as a Hugging Face `evaluate` module, for the final test report.

Kept apart from `metrics.py` because `import evaluate` also imports `transformers.pipelines`
(seconds of start-up that validation during training does not need).
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

from .metrics import classification_metrics

_DESCRIPTION = """Speech-emotion-recognition scores from one confusion matrix: accuracy, UAR (unweighted
average recall, the usual headline number for SER), macro-F1, and per-class precision, recall and F1."""


class EmotionMetrics(evaluate.Metric):
    """`EmotionMetrics().compute(predictions=ids, references=ids, labels=names)`."""

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
        return classification_metrics(references, predictions, labels)


def evaluate_predictions(y_true, y_pred, labels: list[str]) -> dict:
    """`classification_metrics` computed through `evaluate`."""
    return EmotionMetrics(keep_in_memory=True).compute(
        predictions=np.asarray(y_pred), references=np.asarray(y_true), labels=list(labels)
    )
