"""BentoML service: `POST /classify` (multipart), `POST /classify_array` (JSON), `POST /info`, live
speech over the WebSocket `/stream`, and the Gradio demo at `/ui`, in one process on one port.

Requests are decoded and validated here, and the model runs in this process behind a `Dispatcher`
thread, which merges requests that arrive while it is busy into one call. Settings come from the
environment (`service/settings.py`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
from bentoml.exceptions import ServiceUnavailable
from starlette.applications import Starlette
from starlette.responses import JSONResponse

from pipeline.data.audio import TARGET_SAMPLING_RATE, load_audio, load_samples
from pipeline.data.wav_header import check_wav
from pipeline.errors import InputError
from pipeline.inference.answers import Options, classify_wave
from pipeline.inference.export import stored_model
from pipeline.inference.memory import settle_process
from pipeline.inference.predictor import Predictor
from service.bentoml_fixes import (
    DemoApp,
    GetAsPost,
    JSONErrors,
    RewrittenJSON,
    Route,
    UploadLimit,
    bound_metric_paths,
    log_refusal,
    log_refusals_as_warnings,
)
from service.dispatcher import Dispatcher
from service.inputs import AudioUpload, NoInput, SamplesInput, options_of, status_of
from service.responses import Answer, Functionals, Info, complete_openapi
from service.settings import SETTINGS
from service.stream import StreamEndpoint

# Resolved at import: the demo shows its tag and labels, and `bentoml build` checks it exists.
MODEL = stored_model(SETTINGS.model_tag)
LABELS: list[str] = MODEL.info.metadata["labels"]

BUSY = (
    f"the server is busy: the clip waited more than {SETTINGS.max_latency_ms} ms for the model "
    "(SER_MAX_LATENCY_MS); try again later"
)
log_refusals_as_warnings()
bound_metric_paths(extra=("/stream",))


def _answer(
    ctx: bentoml.Context, work: Callable[[], dict[str, Any]], upload: Path | None = None
) -> Answer | JSONResponse:
    """`work()`'s answer, or an error answer logged as one warning line: 4xx for a refused input
    (an upload is called "upload", not by the path of the server's temporary copy), 503 for a clip
    the dispatcher refused after it waited SER_MAX_LATENCY_MS. (The API methods declare `Answer`,
    their 200 schema; BentoML sends a returned response as it is, the errors declared in
    `service/responses.py`.)"""
    try:
        return Answer.model_validate(work())
    except InputError as err:
        status, message = status_of(err), str(err).replace(str(upload), "upload") if upload else str(err)
    except ServiceUnavailable:
        status, message = 503, BUSY
        ctx.response.headers["Retry-After"] = "1"
    ctx.response.status_code = status
    log_refusal(ctx.request, status, message)
    return JSONResponse({"error": message}, status)


def gradio_app(service: EmotionClassifier) -> Starlette:
    """The Gradio demo on `service`'s model, as an ASGI app (mounted the way that works with
    BentoML 1.4 and Gradio 6: `bentoml.gradio.mount_gradio_app` answers 500)."""
    import gradio as gr
    from fastapi import FastAPI

    from demo.app import build_demo, example_clips

    demo = build_demo(service.classify_file, LABELS, str(MODEL.tag), example_clips(), live=service.model)
    return gr.mount_gradio_app(FastAPI(), demo, path="", max_file_size=SETTINGS.max_upload_bytes)


ui = DemoApp()


# Live speech over a WebSocket, on the model the REST API uses (its dispatcher merges both).
stream = StreamEndpoint(lambda: bentoml.get_current_service().model, LABELS, SETTINGS)


@bentoml.service(threads=SETTINGS.threads)
@bentoml.asgi_app(ui, path="/ui")
class EmotionClassifier:
    """Speech emotion recognition with the checkpoint registered as SER_MODEL_TAG."""

    def __init__(self) -> None:
        self.model_tag = str(MODEL.tag)
        self.predictor = Predictor.from_pretrained(
            MODEL.path, SETTINGS.device, SETTINGS.precision, SETTINGS.backend
        )
        settle_process(self.predictor.backend)  # before the model runs
        self.network = Dispatcher(
            self.predictor.network_logits,
            SETTINGS.max_batch_size,
            SETTINGS.max_latency_ms / 1000,
        )
        self.warm = False
        self.warming = threading.Lock()
        ui.build(gradio_app(self))

    def __is_ready__(self) -> bool:
        """Ready once a warm-up clip has gone through the model: one warm-up, however many
        readiness probes arrive while it runs (a probe that times out is repeated)."""
        if not self.warm and self.warming.acquire(blocking=False):
            try:
                if not self.warm:
                    silence = np.zeros(TARGET_SAMPLING_RATE, dtype=np.float32)
                    self.warm = len(self.model([silence])) == 1
            finally:
                self.warming.release()
        return self.warm

    def model(self, waves: list[np.ndarray]) -> np.ndarray:
        """Class probabilities: the network on the dispatcher (merged with other requests), the
        functionals head meanwhile in this request's thread (it runs clip by clip, and requests in
        parallel)."""
        network = self.network.submit(waves)
        head = self.predictor.head_log_probabilities(waves)
        return self.predictor.answer_probabilities(network.result(), head)

    def classify_wave(self, wave: np.ndarray, options: Options) -> dict[str, Any]:
        answer = classify_wave(wave, TARGET_SAMPLING_RATE, LABELS, self.model, options)
        return {**answer, "model": self.model_tag}

    def classify_file(self, path: str | Path, options: Options) -> dict[str, Any]:
        """Decode (any format, rate, channels; bounded by SER_MAX_SECONDS) and classify; a WAV file
        whose header does not match its length is refused first."""
        check_wav(path, SETTINGS.max_seconds, name=str(path))
        return self.classify_wave(load_audio(path, max_seconds=SETTINGS.max_seconds), options)

    @bentoml.api(route="/classify", input_spec=AudioUpload)
    def classify(self, audio: Path, ctx: bentoml.Context, **options: Any) -> Answer:
        """Classify an uploaded clip (WAV, FLAC, OGG or MP3, any sample rate, mono or stereo).

        Returns label, score, scores (probability per label), duration_s and model, plus segments
        (start, end, label, score, scores) when window_s or segments=vad is given; bad input gets a
        4xx answer, and a clip the busy model could not take in time a 503, with a JSON body
        `{"error": "..."}`.
        """
        return _answer(ctx, lambda: self.classify_file(audio, options_of(options)), audio)

    @bentoml.api(route="/classify_array", input_spec=SamplesInput)
    def classify_array(
        self, samples: list, sampling_rate: int, ctx: bentoml.Context, **options: Any
    ) -> Answer:
        """Classify audio already in memory: the same answer as /classify for the same samples."""

        def classify() -> dict[str, Any]:
            wave = load_samples(samples, sampling_rate, max_seconds=SETTINGS.max_seconds)
            return self.classify_wave(wave, options_of(options))

        return _answer(ctx, classify)

    @bentoml.api(route="/info", input_spec=NoInput)
    def info(self) -> Info:
        """The served model, its labels, its functionals head and calibration temperature, where and at
        what precision it runs, and the request limits (GET or POST)."""
        head = self.predictor.head
        return Info(
            model=self.model_tag,
            labels=LABELS,
            functionals=head and Functionals(feature_set=head.feature_set, weight=head.weight),
            calibration_temperature=self.predictor.temperature,
            backend=self.predictor.backend,
            precision=self.predictor.precision,
            device=str(self.predictor.device),
            sampling_rate=TARGET_SAMPLING_RATE,
            max_seconds=SETTINGS.max_seconds,
            max_upload_mb=SETTINGS.max_upload_bytes / 2**20,
        )


# Outermost first: the OpenAPI document completed, every error answer `{"error": ...}`, request
# bodies bounded, GET /info, and /stream.
EmotionClassifier.add_asgi_middleware(RewrittenJSON, path="/docs.json", rewrite=complete_openapi)
EmotionClassifier.add_asgi_middleware(JSONErrors, skip_prefixes=("/ui", "/stream"))
EmotionClassifier.add_asgi_middleware(
    UploadLimit, max_bytes=SETTINGS.max_upload_bytes, paths=("/classify", "/classify_array")
)
EmotionClassifier.add_asgi_middleware(GetAsPost, paths=("/info",))
EmotionClassifier.add_asgi_middleware(Route, endpoint=stream, path="/stream")
