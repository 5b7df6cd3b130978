"""`ser evaluate` is `ser predict` on a prepared split: the same prediction path (whole clips, padding
only where the model allows it), so the metrics it reports are the ones the answers give."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import make_tiny_checkpoint
from transformers import AutoFeatureExtractor

from pipeline.data.prepared import load_prepared
from pipeline.inference.predictor import Predictor
from pipeline.metrics import classification_metrics
from pipeline.model import load_checkpoint

LABELS = ["happy", "sad"]
SR = 16_000
CROP_S = 10.0  # data.max_eval_seconds, the crop `ser evaluate` once applied


def _clip(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Quiet noise with a voiced tone in its first and last 2.5 s: a centre crop of 10 s keeps little
    of the tone, so it changes what the model sees."""
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(np.linspace(rng.uniform(90, 250), rng.uniform(90, 250), t.size)) / SR
    voiced = (t < 2.5) | (t > seconds - 2.5)
    wave = 0.3 * voiced * sum(np.sin(k * phase) / k for k in range(1, 6)) / 2.3
    return (wave + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def _undecided(checkpoint: Path, corpus: Path) -> None:
    """Shift the classifier's bias of a random checkpoint so that half the corpus' clips fall on each
    side of its decision boundary: then what a crop or padding changes in a clip changes answers."""
    model = load_checkpoint(checkpoint)
    predictor = Predictor.from_model(
        model, AutoFeatureExtractor.from_pretrained(checkpoint), precision="fp32"
    )
    logits = predictor.logits([sf.read(p, dtype="float32")[0] for p in sorted(corpus.rglob("*.wav"))])
    with torch.no_grad():
        model.classifier.bias[1] -= float(np.median(logits[:, 1] - logits[:, 0]))
    model.save_pretrained(checkpoint, safe_serialization=True)


def _corpus(root: Path) -> Path:
    """6 speakers x 2 labels x 2 clips of 4 to 14 s (most longer than the crop), with speakers."""
    rng = np.random.default_rng(0)
    rows = []
    for speaker in range(6):
        for label in LABELS:
            for k in range(2):
                rel = Path(label) / f"s{speaker}_{label}_{k}.wav"
                (root / label).mkdir(parents=True, exist_ok=True)
                sf.write(root / rel, _clip(rng.uniform(4, 14), rng), SR)
                rows.append({"file": rel.as_posix(), "speaker": f"s{speaker}"})
    with open(root / "metadata.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["file", "speaker"])
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.mark.parametrize("norm", ["layer", "group"])  # with an attention mask / without (wav2vec2-base)
def test_evaluate_reports_the_metrics_of_predict_answers(tmp_path, norm, ser_here):
    corpus = _corpus(tmp_path / "corpus")
    checkpoint = make_tiny_checkpoint(tmp_path / "checkpoint", labels=LABELS, norm=norm)
    _undecided(checkpoint, corpus)
    data = tmp_path / "data"
    ser_here(
        "prepare", "--data-dir", str(corpus), "--output-dir", str(data), "--backbone", str(checkpoint),
        "--test-size", "0.5", "--validation-size", "0.2",
    )  # fmt: skip
    test = load_prepared(data)[0]["test"]
    paths, truth = list(test["path"]), [LABELS.index(label) for label in test["label"]]
    assert len(paths) >= 8 and max(test["duration"]) > CROP_S

    answers = ser_here("predict", "--checkpoint", str(checkpoint), "--precision", "fp32", *paths).stdout
    predicted = [LABELS.index(json.loads(line)["label"]) for line in answers.splitlines()]
    from_predict = classification_metrics(truth, predicted, LABELS)
    evaluated = json.loads(
        ser_here("evaluate", "--checkpoint", str(checkpoint), "--data", str(data), "--json").stdout
    )
    for key in ("accuracy", "uar", "macro_f1", "samples", "confusion_matrix"):
        assert evaluated[key] == from_predict[key], key

    # The clips are such that a crop would change answers: the test can tell the paths apart.
    predictor = Predictor.from_pretrained(checkpoint, precision="fp32")
    waves = [sf.read(p, dtype="float32")[0] for p in paths]
    crop = int(CROP_S * SR)
    cropped = [w[max(len(w) - crop, 0) // 2 :][:crop] for w in waves]
    assert predictor.logits(cropped).argmax(-1).tolist() != predicted
