"""Probability calibration of a classifier's logits by temperature scaling (Guo et al., 2017): one
temperature T, fitted on validation logits, divides every logit, which changes no prediction, only
how confident it is; top-label expected calibration error (ECE), reliability bins and negative
log-likelihood measure the effect."""

from __future__ import annotations

import numpy as np

# At most 4x sharper: a validation split the answer gets all right would drive T towards 0 (every
# score 1.0), which a few speakers cannot justify for others (real corpora fitted 0.49 to 0.93).
T_MIN, T_MAX = 0.25, 20.0


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities of `logits / temperature` (rows sum to 1; stable for large logits)."""
    return np.exp(log_softmax(logits, temperature))


def log_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Log class probabilities of `logits / temperature` (float64, stable for large logits)."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    shifted = scaled - scaled.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def negative_log_likelihood(logits: np.ndarray, targets: np.ndarray, temperature: float = 1.0) -> float:
    """Mean cross-entropy of softmax(`logits / temperature`) against class ids `targets` (0.0 if empty)."""
    targets = np.asarray(targets, dtype=np.int64)
    if targets.size == 0:
        return 0.0
    log_p = log_softmax(logits, temperature)
    return float(-log_p[np.arange(len(targets)), targets].mean())


def _binned(probabilities: np.ndarray, targets: np.ndarray, bins: int) -> tuple:
    """Top-label confidence, correctness and equal-width bin (on (0, 1]) of each sample."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(targets, dtype=np.int64)
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    return confidence, correct, index


def reliability_bins(probabilities: np.ndarray, targets: np.ndarray, bins: int = 15) -> list[dict]:
    """Per non-empty confidence bin: its edges, mean confidence, accuracy and sample count (the points
    of a reliability diagram)."""
    if len(targets) == 0:
        return []
    confidence, correct, index = _binned(probabilities, targets, bins)
    rows = []
    for b in np.unique(index):
        members = index == b
        rows.append(
            {
                "lower": float(b / bins),
                "upper": float((b + 1) / bins),
                "confidence": float(confidence[members].mean()),
                "accuracy": float(correct[members].mean()),
                "count": int(members.sum()),
            }
        )
    return rows


def expected_calibration_error(probabilities: np.ndarray, targets: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE: the count-weighted mean over equal-width confidence bins of |accuracy - confidence|."""
    rows = reliability_bins(probabilities, targets, bins)
    n = len(targets)
    return float(sum(row["count"] / n * abs(row["accuracy"] - row["confidence"]) for row in rows))


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The temperature in [T_MIN, T_MAX] that minimises the negative log-likelihood of `targets`
    (searched in log space); 1.0 for no samples."""
    if len(targets) == 0:
        return 1.0
    from scipy.optimize import minimize_scalar  # imported on use: scipy.optimize takes ~1 s to import

    found = minimize_scalar(
        lambda log_t: negative_log_likelihood(logits, targets, float(np.exp(log_t))),
        bounds=(np.log(T_MIN), np.log(T_MAX)),
        method="bounded",
    )
    return round(float(np.exp(found.x)), 4)


def calibration_report(
    logits: dict[str, np.ndarray], targets: dict[str, np.ndarray], temperature: float, bins: int = 15
) -> dict:
    """ECE and NLL of each split before (T = 1) and after scaling by `temperature`."""
    report: dict = {"temperature": round(float(temperature), 4), "bins": bins}
    for split, z in logits.items():
        y = targets[split]
        report[split] = {
            "ece_before": round(expected_calibration_error(softmax(z), y, bins), 4),
            "ece_after": round(expected_calibration_error(softmax(z, temperature), y, bins), 4),
            "nll_before": round(negative_log_likelihood(z, y), 4),
            "nll_after": round(negative_log_likelihood(z, y, temperature), 4),
            "samples": len(y),
        }
    return report
