"""`ser baseline`: the classical reference every model is reported against: utterance-level MFCC
statistics (mean and standard deviation of 20 MFCCs, their deltas and delta-deltas) and a logistic
regression (scikit-learn), fitted on the training speakers and scored on the held-out ones.

It takes seconds, needs no GPU and no pretrained weights: a model that does not beat it has not
learned what a few lines of signal processing already know.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torchaudio.functional as AF
import torchaudio.transforms as T
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from ..metrics import classification_metrics

N_MFCC = 20
C_GRID = (0.01, 0.1, 1.0, 10.0)  # inverse regularisation, chosen by validation UAR


def mfcc_statistics(waves, sampling_rate: int) -> np.ndarray:
    """[clips, 6 x N_MFCC]: mean and standard deviation over time of the MFCCs (25-ms windows every
    10 ms, 40 mel bands), their deltas and delta-deltas, of each clip normalised to zero mean and
    unit variance (as wav2vec2's feature extractor does: the same figures whichever way the data
    was prepared)."""
    mfcc = T.MFCC(
        sample_rate=sampling_rate,
        n_mfcc=N_MFCC,
        melkwargs={
            "n_fft": int(0.025 * sampling_rate),
            "hop_length": int(0.01 * sampling_rate),
            "n_mels": 40,
        },
    )
    rows, threads = [], torch.get_num_threads()
    torch.set_num_threads(1)  # one clip's small transforms: threads only wait for each other (50x slower)
    try:
        for wave in tqdm(waves, desc="baseline features", leave=False):
            wave = np.asarray(wave, dtype=np.float64)
            wave = ((wave - wave.mean()) / (wave.std() + 1e-12)).astype(np.float32)  # even a faint clip
            coefficients = mfcc(torch.from_numpy(wave))
            deltas = AF.compute_deltas(coefficients)
            tracks = torch.cat([coefficients, deltas, AF.compute_deltas(deltas)])
            rows.append(torch.cat([tracks.mean(-1), tracks.std(-1, unbiased=False)]).numpy())
    finally:
        torch.set_num_threads(threads)
    return np.stack(rows)


def classifier(c: float):
    """Standardised features, then a class-balanced multinomial logistic regression."""
    return make_pipeline(
        StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=5000, random_state=0)
    )


def fit_and_score(features: dict[str, np.ndarray], targets: dict[str, np.ndarray], labels: list[str]) -> dict:
    """Fit on `train` for each C of `C_GRID`, keep the best by validation UAR, score validation and
    test: {"C": chosen, split: metrics}."""
    best, best_uar = None, -1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # tiny or separable data: still a valid fit
        for c in C_GRID:
            model = classifier(c).fit(features["train"], targets["train"])
            uar = classification_metrics(
                targets["validation"], model.predict(features["validation"]), labels
            )["uar"]
            if uar > best_uar:
                best, best_uar = (c, model), uar
    c, model = best
    return {
        "C": c,
        **{
            split: classification_metrics(targets[split], model.predict(features[split]), labels)
            for split in ("validation", "test")
            if len(targets[split])
        },
    }


def baseline_metrics(dataset, labels: list[str], sampling_rate: int) -> dict:
    """The baseline on a prepared fold (train, validation and test splits of `load_prepared`)."""
    index = {label: i for i, label in enumerate(labels)}
    features, targets = {}, {}
    for split in ("train", "validation", "test"):
        audio = dataset[split].with_format("numpy", columns=["input_values"])
        features[split] = (
            mfcc_statistics((row["input_values"] for row in audio), sampling_rate)
            if len(audio)
            else np.zeros((0, 6 * N_MFCC), dtype=np.float32)
        )
        targets[split] = np.array([index[label] for label in dataset[split]["label"]], dtype=np.int64)
    return {"features": f"MFCC statistics ({6 * N_MFCC})", **fit_and_score(features, targets, labels)}
