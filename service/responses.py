"""What the API answers: the response models (what the API methods return, hence the OpenAPI
document's 200 schemas) and the error answers each endpoint declares, with the document's title,
description and version (`complete_openapi`)."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from service.stream import __doc__ as STREAM_PROTOCOL

Scores = dict[str, float]


class Emotion(BaseModel):
    label: str = Field(description="the most probable emotion")
    score: float = Field(description="its probability")
    scores: Scores = Field(description="probability per label (the top_k best, best first, if asked)")


class Segment(Emotion):
    """One span of a timeline (a window, or a stretch of speech) and its emotion."""

    start: float = Field(description="seconds from the start of the clip")
    end: float = Field(description="seconds from the start of the clip")


class Answer(Emotion):
    """A clip's emotion, and its timeline where one was asked for (window_s or segments)."""

    duration_s: float = Field(description="the clip's length in seconds")
    model: str = Field(description="the served model's tag")
    segments: list[Segment] | None = Field(
        None,
        description="the timeline (only where asked for); the clip's answer is their duration-weighted mean",
        exclude_if=lambda segments: segments is None,
    )


class Functionals(BaseModel):
    feature_set: str = Field(description="openSMILE feature set of the functionals head")
    weight: float = Field(description="the network's share of the fused answer")


class Info(BaseModel):
    """The served model and the request limits."""

    model: str
    labels: list[str]
    functionals: Functionals | None = Field(description="the checkpoint's functionals head, or null")
    calibration_temperature: float
    backend: str = Field(description="onnx or torch")
    precision: str
    device: str
    sampling_rate: int = Field(description="what the model hears; any input rate is resampled to it")
    max_seconds: float = Field(description="longer clips get 422")
    max_upload_mb: float = Field(description="larger request bodies get 413")


class Error(BaseModel):
    """Every error answer: what is wrong, in one line."""

    error: str
    detail: Any = Field(None, description="the validation problems, for a 400 about the body's fields")


ERRORS = {
    400: "the body is malformed, has unknown or repeated fields, or the audio cannot be read",
    413: "the request body is larger than SER_MAX_UPLOAD_MB",
    415: "the media type is refused (BentoML's pickle format)",
    422: "readable audio outside the limits (duration, sampling rate, channels), or options no clip "
    "could satisfy (top_k, window_s, hop_s)",
    500: "a fault of the server (never an answer to input)",
    503: "the model is busy: the clip waited longer than SER_MAX_LATENCY_MS; Retry-After says when "
    "to try again",
}
CLASSIFY_STATUSES = [400, 413, 415, 422, 500, 503]
# path: (the answer's model, the error statuses)
RESPONSES = {
    "/classify": (Answer, CLASSIFY_STATUSES),
    "/classify_array": (Answer, CLASSIFY_STATUSES),
    "/info": (Info, [400, 415, 500]),
}
REF = "#/components/schemas/{model}"


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    schema = {"$ref": REF.format(model=model.__name__)}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def complete_openapi(document: dict[str, Any]) -> dict[str, Any]:
    """BentoML's OpenAPI document with what it lacks: the title, description and version (the
    package's), every error status each endpoint answers with its JSON body, GET /info, and the
    `/stream` WebSocket."""
    document["info"] = {
        "title": "Speech emotion recognition",
        "description": "Upload a clip, get its emotion and the probability of each label; "
        "`/stream` answers live speech over a WebSocket; the demo is at `/ui`.",
        "version": version("ser-toolkit"),
    }
    models = [(model, "serialization") for model in (Answer, Info, Error)]
    _, schemas = models_json_schema(models, ref_template=REF)
    document.setdefault("components", {}).setdefault("schemas", {}).update(schemas["$defs"])
    for path, (model, statuses) in RESPONSES.items():
        errors = {str(status): _json(Error, ERRORS[status]) for status in statuses}
        document["paths"][path]["post"]["responses"] = {"200": _json(model, model.__doc__), **errors}
    info = document["paths"]["/info"]["post"]
    document["paths"]["/info"]["get"] = {
        key: value for key, value in info.items() if key != "requestBody"
    } | {"operationId": info["operationId"] + "_get"}
    document["paths"]["/stream"] = {
        "get": {
            "tags": info.get("tags", []),
            "summary": "Live speech over a WebSocket",
            "description": STREAM_PROTOCOL,
            "operationId": "stream",
            "responses": {
                "101": {"description": "the WebSocket is open: the protocol above follows"},
                "426": _json(Error, "a plain HTTP request: connect with ws://"),
            },
        }
    }
    return document
