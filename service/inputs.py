"""The API's request bodies, parsed and validated before an API method runs; their options are
`pipeline.inference.answers.Options`, the type the CLI and the demo use, turned into fields here.

Parsed here rather than by BentoML 1.4 (>=1.4.30,<1.5, checked up to 1.4.40), whose multipart parser
answers 500 to a text `audio` field (it fetches it as a URL), to an extra binary field (it parses it
as JSON) and to a malformed multipart body, and which parses a multipart body sent to a JSON
endpoint into a 500 too.

Strict: query parameters, unknown fields and repeated fields are refused (400) with a message that
names the accepted fields; the OpenAPI schemas say so (`additionalProperties: false`). Every refusal
is a pydantic ValidationError, which BentoML answers with 400 (`service/bentoml_fixes.py` turns its
body into a readable `error`).
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal

import bentoml
from pydantic import BeforeValidator, ConfigDict, Field, ValidationError, create_model
from pydantic_core import InitErrorDetails, PydanticCustomError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request

from pipeline.data.audio import MAX_SAMPLING_RATE, MIN_SAMPLING_RATE
from pipeline.errors import InputError, LimitError, OptionError
from pipeline.inference.answers import Options


def status_of(err: InputError) -> int:
    """The HTTP status of a refused input: 422 for readable audio outside the limits or options no
    clip could satisfy, 400 for audio that cannot be read."""
    return 422 if isinstance(err, (LimitError, OptionError)) else 400


def _not_a_bool(value: Any) -> Any:
    """pydantic would read true as 1: a rate, a count or seconds is never true or false."""
    if isinstance(value, bool):
        raise ValueError("a number is expected, not true or false")
    return value


NotBool = BeforeValidator(_not_a_bool)


def refusal(title: str, message: str) -> ValidationError:
    """A ValidationError carrying `message`, which says it all (BentoML answers it with 400)."""
    error = InitErrorDetails(type=PydanticCustomError("bad_request", message), loc=(), input=None)
    return ValidationError.from_exception_data(title, [error])


CUT_OFF = "the request was cut off: the client disconnected before its body was complete"


async def _body(cls: type, request: Request) -> bytes:
    """The JSON body (`{}` when empty); a client that hangs up mid-body gets a 400 in the log, not a 500."""
    try:
        return await request.body() or b"{}"
    except ClientDisconnect:
        raise refusal(cls.__name__, CUT_OFF) from None


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _upload_name(filename: str | None) -> str:
    """The name an upload is stored under: "upload" plus its extension. BentoML names its temporary
    copy after the upload, where a long or odd name would fail; the decoder may use the extension."""
    suffix = Path(filename or "").suffix
    return "upload" + suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", suffix) else "upload"


class StrictInput(bentoml.IODescriptor):
    """A request body that refuses query parameters and fields it does not know."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def _accepted(cls) -> str:
        """The accepted fields, required ones first."""
        names = sorted(cls.model_fields, key=lambda name: not cls.model_fields[name].is_required())
        return f"the fields are {', '.join(names)}" if names else "it takes no fields"

    @classmethod
    def _refuse_query(cls, request: Request) -> None:
        if request.query_params:
            names = ", ".join(sorted(set(request.query_params)))
            raise refusal(
                cls.__name__,
                f"unknown query parameter(s) {names}: {request.url.path} takes no query parameters "
                f"({cls._accepted()}, in the body)",
            )

    @classmethod
    def _validated(cls, data: dict[str, Any] | bytes) -> StrictInput:
        """`data` (a dict, or a JSON body) validated; unknown fields refused by name."""
        try:
            return cls.model_validate(data) if isinstance(data, dict) else cls.model_validate_json(data)
        except ValidationError as err:
            unknown = [str(e["loc"][0]) for e in err.errors() if e["type"] == "extra_forbidden" and e["loc"]]
            if not unknown:
                raise
            names = ", ".join(unknown)
            raise refusal(cls.__name__, f"unknown field(s) {names}: {cls._accepted()}") from None


def _option_field(field: dataclasses.Field, kind: Any) -> tuple[Any, Any]:
    """An `Options` field as a request field: its help, and its minimum, which the schema documents
    and pydantic leaves to `Options.check` (the API's own 422 with its message)."""
    choices = field.metadata.get("choices")
    kind = Literal[choices] | None if choices else Annotated[kind, NotBool]
    minimum = Options.MINIMUM.get(field.name)
    extra = {"minimum": minimum} if minimum is not None else None
    return kind, Field(field.default, description=field.metadata["help"], json_schema_extra=extra)


_OPTION_TYPES = typing.get_type_hints(Options)
ClipOptions = create_model(
    "ClipOptions",
    __base__=StrictInput,
    __doc__="The options both classify endpoints take: `pipeline.inference.answers.Options`.",
    **{f.name: _option_field(f, _OPTION_TYPES[f.name]) for f in dataclasses.fields(Options)},
)


def options_of(fields: dict[str, Any]) -> Options:
    """The `Options` of a request's option fields (BentoML passes them to the API as keywords)."""
    return Options(**{f.name: fields[f.name] for f in dataclasses.fields(Options)})


class AudioUpload(ClipOptions):
    """Multipart form: the audio file (WAV, FLAC, OGG, MP3) in `audio`, and the options."""

    audio: Path

    @classmethod
    async def from_http_request(cls, request: Request, serde: Any) -> AudioUpload:
        cls._refuse_query(request)
        if _media_type(request) != "multipart/form-data":
            raise refusal(
                cls.__name__,
                "send a multipart/form-data body with the clip in the file field 'audio' "
                f"(this one is {_media_type(request) or 'without a Content-Type'})",
            )
        try:
            form = await request.form()
        except HTTPException as err:  # Starlette's answer to a malformed multipart body
            raise refusal(cls.__name__, f"malformed multipart body: {err.detail}") from None
        except ClientDisconnect:
            raise refusal(cls.__name__, CUT_OFF) from None
        repeated = sorted(name for name, n in Counter(k for k, _ in form.multi_items()).items() if n > 1)
        if repeated:
            raise refusal(cls.__name__, f"field(s) given more than once: {', '.join(repeated)}")
        if isinstance(form.get("audio"), str):
            raise refusal(cls.__name__, "the field 'audio' must be a file (a part with a filename), not text")
        fields = {}
        for name, value in form.items():
            if isinstance(value, UploadFile):
                value.filename = _upload_name(value.filename)
            if value != "":  # an empty optional field means "not given"
                fields[name] = value
        return cls._validated(fields)


class SamplesInput(ClipOptions):
    """JSON: `samples` (mono, or frames of channels) at `sampling_rate`, and the options."""

    samples: Annotated[list[float] | list[list[float]], Field(description="mono, or frames of channels")]
    sampling_rate: Annotated[
        int,
        NotBool,
        Field(
            description="samples per second",
            json_schema_extra={"minimum": MIN_SAMPLING_RATE, "maximum": MAX_SAMPLING_RATE},
        ),
    ]

    @classmethod
    async def from_http_request(cls, request: Request, serde: Any) -> SamplesInput:
        cls._refuse_query(request)
        if _media_type(request) == "multipart/form-data":
            raise refusal(cls.__name__, "send a JSON body (files go to /classify)")
        return cls._validated(await _body(cls, request))


class NoInput(StrictInput):
    """No fields: an empty body, or `{}`."""

    @classmethod
    async def from_http_request(cls, request: Request, serde: Any) -> NoInput:
        cls._refuse_query(request)
        return cls._validated(await _body(cls, request))
