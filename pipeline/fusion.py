"""The functionals head: a linear model on a clip's utterance-level functionals (`pipeline.functionals`,
openSMILE ComParE_2016 by default), whose log-probabilities are averaged with the network's.

The network hears a clip frame by frame; the head sees statistics of the whole utterance. On real
speech each is right where the other is wrong, and their weighted geometric mean beats both
(docs/training.md#accuracy-on-real-corpora). The head is fitted on the network's training (and
validation) speakers, the two shares on the validation speakers (`fit_weight`); the head is saved
in the checkpoint beside the network without pickle: `functionals.safetensors` (the scaler's mean
and scale, the weights and biases) and `functionals.json` (the feature set and the network's share).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from .calibration import log_softmax, negative_log_likelihood
from .errors import SerError
from .files import write_file_atomic
from .functionals import FEATURE_SETS, feature_count, functionals

HEAD_WEIGHTS, HEAD_CONFIG = "functionals.safetensors", "functionals.json"
HEAD_C = 1e-3  # inverse L2 strength: thousands of functionals, a few hundred clips
ABSENT_CLASS_BIAS = -30.0  # a class with no training clip: never the head's answer
EQUAL_SHARES = 0.5  # the fusion weight where no validation clip tells better


def fused_log_probabilities(
    network_logits: np.ndarray, head_log_probabilities: np.ndarray, weight: float
) -> np.ndarray:
    """weight · log p(network) + (1 - weight) · log p(head): a weighted geometric mean, unnormalised."""
    return weight * log_softmax(network_logits) + (1 - weight) * head_log_probabilities


def fit_weight(network_logits: np.ndarray, head_log_probabilities: np.ndarray, targets: np.ndarray) -> float:
    """The network's share in [0, 1] that minimises the negative log-likelihood of `targets` under the
    fused answer (convex in the share: one bounded search); `EQUAL_SHARES` without clips."""
    if len(targets) == 0:
        return EQUAL_SHARES
    from scipy.optimize import minimize_scalar  # imported on use, as in `fit_temperature`

    found = minimize_scalar(
        lambda weight: negative_log_likelihood(
            fused_log_probabilities(network_logits, head_log_probabilities, weight), targets
        ),
        bounds=(0.0, 1.0),
        method="bounded",
    )
    return round(float(found.x), 4)


@dataclass
class FunctionalsHead:
    """Standardised functionals -> a multinomial logistic regression's class scores."""

    feature_set: str
    sampling_rate: int
    weight: float  # the network's share of the fused log-probabilities; the head's is 1 - weight
    mean: np.ndarray  # (features,)
    scale: np.ndarray  # (features,)
    coef: np.ndarray  # (classes, features)
    intercept: np.ndarray  # (classes,)

    @classmethod
    def fit(
        cls,
        features: np.ndarray,
        targets: np.ndarray,
        classes: int,
        feature_set: str,
        sampling_rate: int,
        weight: float,
    ) -> FunctionalsHead:
        """A class-balanced logistic regression (scikit-learn) on standardised `features`."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler().fit(features)
        model = LogisticRegression(C=HEAD_C, class_weight="balanced", max_iter=5000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(scaler.transform(features), targets)
        seen = model.classes_
        coef, intercept = model.coef_, model.intercept_
        if len(seen) == 2:  # scikit-learn keeps one row for two classes: the second's score
            coef, intercept = (
                np.stack([-coef[0] / 2, coef[0] / 2]),
                np.array([-intercept[0] / 2, intercept[0] / 2]),
            )
        full_coef = np.zeros((classes, features.shape[1]), dtype=np.float32)
        full_intercept = np.full(classes, ABSENT_CLASS_BIAS, dtype=np.float32)
        full_coef[seen], full_intercept[seen] = coef, intercept
        return cls(
            feature_set,
            sampling_rate,
            weight,
            scaler.mean_.astype(np.float32),
            scaler.scale_.astype(np.float32),
            full_coef,
            full_intercept,
        )

    def scores(self, features: np.ndarray) -> np.ndarray:
        """(clips, classes) class scores of a batch of functionals; a functional a clip is too short
        for (openSMILE gives NaN) counts as the training mean."""
        standardised = np.nan_to_num((features - self.mean) / self.scale, nan=0.0, posinf=0.0, neginf=0.0)
        return standardised @ self.coef.T + self.intercept

    def log_probabilities(self, waves: list[np.ndarray]) -> np.ndarray:
        """(clips, classes) the head's log-probabilities of 1-D waveforms at `self.sampling_rate`."""
        return log_softmax(self.scores(functionals(waves, self.sampling_rate, self.feature_set)))

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        arrays = {"mean": self.mean, "scale": self.scale, "coef": self.coef, "intercept": self.intercept}
        save_file(
            {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()},
            directory / HEAD_WEIGHTS,
        )
        settings = {
            "feature_set": self.feature_set,
            "sampling_rate": self.sampling_rate,
            "weight": self.weight,
        }
        write_file_atomic(directory / HEAD_CONFIG, json.dumps(settings, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> FunctionalsHead | None:
        """The head saved in a checkpoint directory, or None where it has none."""
        directory = Path(directory)
        if not (directory / HEAD_CONFIG).is_file():
            return None
        try:
            settings = json.loads((directory / HEAD_CONFIG).read_text())
            arrays = load_file(directory / HEAD_WEIGHTS)
            head = cls(
                str(settings["feature_set"]),
                int(settings["sampling_rate"]),
                float(settings["weight"]),
                *(arrays[k] for k in ("mean", "scale", "coef", "intercept")),
            )
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise SerError(f"unreadable functionals head in {directory}: {err}") from err
        width = feature_count(head.feature_set) if head.feature_set in FEATURE_SETS else -1
        if (
            width < 0
            or head.mean.shape != (width,)
            or head.coef.shape[1:] != (width,)
            or not 0 <= head.weight <= 1
        ):
            raise SerError(
                f"functionals head in {directory} does not fit its feature set {head.feature_set!r}"
            )
        return head
