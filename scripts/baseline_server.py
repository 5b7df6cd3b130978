"""The straightforward alternative that `bench_serve.py` measures us against: a minimal FastAPI app
calling `transformers.pipeline("audio-classification")` per request (the model directory comes from
BASELINE_MODEL). Run: `uvicorn baseline_server:app --app-dir scripts`."""

from __future__ import annotations

import io
import os
from typing import Annotated

import soundfile as sf
from fastapi import FastAPI, File, UploadFile
from transformers import pipeline

classifier = pipeline("audio-classification", model=os.environ["BASELINE_MODEL"], device="cpu")
app = FastAPI()


@app.get("/health")
def health() -> dict:
    return {"ok": True}


@app.post("/classify")
def classify(audio: Annotated[UploadFile, File()]) -> dict:
    wave, sampling_rate = sf.read(io.BytesIO(audio.file.read()), dtype="float32")
    if wave.ndim == 2:
        wave = wave.mean(axis=1)
    results = classifier({"raw": wave, "sampling_rate": sampling_rate}, top_k=None)
    best = max(results, key=lambda r: r["score"])
    return {
        "label": best["label"],
        "score": best["score"],
        "scores": {r["label"]: r["score"] for r in results},
    }
