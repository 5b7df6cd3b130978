"""BentoML service: `POST /classify` (multipart field `audio`) and the Gradio demo at `/ui`.

Settings come from the environment: SER_MODEL_TAG (default ser-emotion:latest),
SER_MAX_SECONDS (60, longer clips get 422) and SER_MAX_UPLOAD_MB (20, larger uploads get 413).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import bentoml
import gradio as gr
import numpy as np
from fastapi import FastAPI
from starlette.requests import Request

from demo.app import build_demo
from pipeline.audio import load_audio
from pipeline.errors import AudioError, ConfigError
from pipeline.export import served_tag, stored_model
from pipeline.inference import Prediction, Predictor
from service.limits import UploadLimit


def _env_number(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    try:
        return float(value) if value else default
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {value!r}") from None


MAX_SECONDS = _env_number("SER_MAX_SECONDS", 60)
MAX_UPLOAD_BYTES = int(_env_number("SER_MAX_UPLOAD_MB", 20) * 2**20)
# Resolved at import: the demo shows its tag and labels, and `bentoml build` checks it exists.
MODEL = stored_model(served_tag())


class AudioUpload(bentoml.IODescriptor):
    """An audio file (WAV, FLAC, OGG, MP3) in the multipart field `audio`."""

    audio: Path

    # Parsed here rather than by BentoML 1.4, whose multipart parser answers 500 to a text `audio`
    # field (it fetches it as a URL) and to an extra binary field (it parses it as JSON).

    @classmethod
    async def from_http_request(cls, request: Request, serde: Any) -> AudioUpload:
        form = await request.form()
        return cls.model_validate({"audio": form.get("audio")} if "audio" in form else {})


def _demo_predict(path: str) -> Prediction:
    return bentoml.get_current_service().predict_file(path)


# Mounted the way that works with BentoML 1.4 + Gradio 6 (bentoml.gradio.mount_gradio_app 500s).
ui = gr.mount_gradio_app(
    FastAPI(),
    build_demo(_demo_predict, MODEL.info.metadata["labels"], str(MODEL.tag)),
    path="",
    max_file_size=MAX_UPLOAD_BYTES,
)


@bentoml.service
@bentoml.asgi_app(ui, path="/ui")
class EmotionClassifier:
    """Speech emotion recognition with the checkpoint registered as SER_MODEL_TAG."""

    def __init__(self) -> None:
        self.model_tag = str(MODEL.tag)
        self.predictor = Predictor.from_pretrained(MODEL.path)
        self.predictor.predict([np.zeros(self.predictor.sampling_rate, dtype=np.float32)])  # warm-up

    def predict_file(self, path: str) -> Prediction:
        """Decode (any format, rate, channels; bounded by SER_MAX_SECONDS) and classify."""
        return self.predictor.predict_source(path, max_seconds=MAX_SECONDS)

    @bentoml.api(route="/classify", input_spec=AudioUpload)
    def classify(self, audio: Path, ctx: bentoml.Context) -> dict[str, Any]:
        """Classify an uploaded clip (WAV, FLAC, OGG or MP3, any sample rate, mono or stereo).

        Returns label, score, scores (probability per label), duration_s and model; bad audio
        gets a 4xx answer with a JSON body `{"error": "..."}`.
        """
        try:
            wave = load_audio(audio.read_bytes(), self.predictor.sampling_rate, max_seconds=MAX_SECONDS)
        except AudioError as err:
            ctx.response.status_code = err.status
            return {"error": str(err)}
        prediction = self.predictor.predict([wave])[0]
        return {
            **prediction.to_dict(),
            "duration_s": round(len(wave) / self.predictor.sampling_rate, 3),
            "model": self.model_tag,
        }


EmotionClassifier.add_asgi_middleware(UploadLimit, max_bytes=MAX_UPLOAD_BYTES)
