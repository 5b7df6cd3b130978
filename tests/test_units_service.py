"""The service's pure logic, in this process: no server, subprocess, model or network.

The ASGI middlewares (`service/bentoml_fixes.py`: UploadLimit, JSONErrors) are driven with hand-made
`scope`/`receive`/`send`; the request parsing of `service/inputs.py` runs behind a tiny Starlette app
that answers a pydantic ValidationError the way BentoML 1.4 does (400, `{"error": "N validation
error for X", "detail": [...]}`), wrapped in both middlewares in the order `service/service.py` adds
them. Also: the settings read from the environment, the run configuration's YAML and overrides
(beyond tests/test_config.py), `pipeline.errors` (the WAV header check: tests/test_units_audio.py)
and the log lines of refused requests (`service/bentoml_fixes.py`).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from http import HTTPStatus
from pathlib import Path

import pytest
from bentoml.exceptions import BentoMLException, ServiceUnavailable
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from pipeline.config import load_config
from pipeline.errors import (
    AudioError,
    ConfigError,
    LimitError,
    OptionError,
    SerError,
    first_line,
    seconds_past,
)
from service.bentoml_fixes import (
    BENTOML_ERRORS,
    SHOWN_PROBLEMS,
    JSONErrors,
    RefusalsAsWarnings,
    UploadLimit,
    log_refusals_as_warnings,
    readable_error,
)
from service.inputs import CUT_OFF, AudioUpload, NoInput, SamplesInput, _upload_name, refusal, status_of
from service.settings import Settings

pytestmark = pytest.mark.fast

LIMIT = 2**18  # 0.25 MB
FORM_FIELDS = "the fields are audio, top_k, window_s, hop_s, segments"
JSON_FIELDS = "the fields are samples, sampling_rate, top_k, window_s, hop_s, segments"
NOT_FOUND_HINT = "(the API: POST /classify, POST /classify_array, POST /info; docs at /)"


# --- driving an ASGI app by hand -------------------------------------------------------------------


def http_scope(path: str = "/classify", method: str = "POST", headers: dict[str, str] | None = None) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }


def chunks(*bodies: bytes) -> list[dict]:
    """`http.request` messages, the last without `more_body`."""
    return [
        {"type": "http.request", "body": body, "more_body": i < len(bodies) - 1}
        for i, body in enumerate(bodies)
    ]


class Client:
    """One request: feeds `messages` to the app (then `http.disconnect`), records what it sends."""

    def __init__(self, messages: list[dict] = ()):
        self.inbox = list(messages)
        self.receive_calls = 0
        self.sent: list[dict] = []

    async def receive(self) -> dict:
        self.receive_calls += 1
        return self.inbox.pop(0) if self.inbox else {"type": "http.disconnect"}

    async def send(self, message: dict) -> None:
        self.sent.append(message)

    def run(self, app, scope: dict) -> Client:
        asyncio.run(app(scope, self.receive, self.send))
        return self

    @property
    def status(self) -> int:
        starts = [m for m in self.sent if m["type"] == "http.response.start"]
        assert len(starts) == 1, self.sent  # exactly one answer
        return starts[0]["status"]

    @property
    def headers(self) -> dict[str, str]:
        start = next(m for m in self.sent if m["type"] == "http.response.start")
        return {k.decode().lower(): v.decode() for k, v in start["headers"]}

    @property
    def body(self) -> bytes:
        parts = [m for m in self.sent if m["type"] == "http.response.body"]
        assert parts and not parts[-1].get("more_body", False), self.sent
        return b"".join(m.get("body", b"") for m in parts)

    def json(self):
        return json.loads(self.body)


class Reader:
    """An app that reads the whole body and answers 200 `{"received": n}`; on `http.disconnect` it
    answers 400 (what `service/inputs.py` turns a cut-off body into)."""

    def __init__(self):
        self.calls = 0
        self.body = b""
        self.seen: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        self.calls += 1
        while True:
            message = await receive()
            self.seen.append(message["type"])
            if message["type"] == "http.disconnect":
                await JSONResponse({"error": "cut off"}, status_code=400)(scope, receive, send)
                return
            self.body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        await JSONResponse({"received": len(self.body)})(scope, receive, send)


class Recorder:
    """An app that only records the (scope, receive, send) it was called with."""

    def __init__(self):
        self.calls: list[tuple] = []

    async def __call__(self, scope, receive, send) -> None:
        self.calls.append((scope, receive, send))


def answering(status: int, *bodies: bytes, headers: list[tuple[bytes, bytes]] = ()):
    """An app that answers `status` with `headers` and the body in the given pieces."""

    async def app(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": status, "headers": list(headers)})
        for i, body in enumerate(bodies or (b"",)):
            await send({"type": "http.response.body", "body": body, "more_body": i < len(bodies) - 1})

    return app


# --- service/bentoml_fixes.py: UploadLimit ----------------------------------------------------------------


def limited(app, max_bytes: int = LIMIT, **kwargs) -> UploadLimit:
    return UploadLimit(app, max_bytes=max_bytes, **kwargs)


def assert_too_large(client: Client, limit_text: str = "0.25 MB") -> None:
    assert client.status == 413
    assert client.headers["content-type"] == "application/json"
    assert client.json() == {"error": f"upload too large: the limit is {limit_text}"}


@pytest.mark.parametrize("length", [LIMIT + 1, 10 * LIMIT, 10**12])
def test_a_content_length_over_the_limit_is_refused_before_any_of_the_body_is_read(length):
    app = Reader()
    client = Client(chunks(b"x" * 100)).run(limited(app), http_scope(headers={"Content-Length": str(length)}))
    assert_too_large(client)
    assert client.receive_calls == 0 and app.calls == 0


@pytest.mark.parametrize("length", [0, 1, LIMIT - 1, LIMIT])
def test_a_content_length_up_to_the_limit_reaches_the_app(length):
    app = Reader()
    body = b"x" * length
    client = Client(chunks(body)).run(limited(app), http_scope(headers={"Content-Length": str(length)}))
    assert client.status == 200 and client.json() == {"received": length}
    assert app.body == body


@pytest.mark.parametrize("value", ["abc", "-1", "", "1e3", " 12", "0x10", "+5", "12.0"])
def test_an_invalid_content_length_is_refused_with_400(value):
    app = Reader()
    client = Client(chunks(b"x")).run(limited(app), http_scope(headers={"Content-Length": value}))
    assert client.status == 400
    assert client.headers["content-type"] == "application/json"
    assert client.json() == {"error": "invalid Content-Length header"}
    assert app.calls == 0 and client.receive_calls == 0


@pytest.mark.parametrize(
    "sizes",
    [[LIMIT], [LIMIT // 4] * 4, [0, LIMIT, 0], [1] * 7 + [LIMIT - 7], []],
    ids=["one-chunk", "four-chunks", "empty-chunks-around", "many-small", "no-chunks"],
)
def test_a_chunked_body_up_to_the_limit_reaches_the_app_whole(sizes):
    app = Reader()
    body_chunks = [bytes([65 + i % 26]) * n for i, n in enumerate(sizes)]
    client = Client(chunks(*body_chunks) if sizes else [{"type": "http.request"}])
    client.run(limited(app), http_scope(headers={"Transfer-Encoding": "chunked"}))
    assert client.status == 200 and client.json() == {"received": sum(sizes)}
    assert app.body == b"".join(body_chunks) and "http.disconnect" not in app.seen


@pytest.mark.parametrize(
    "sizes, read",
    [
        ([LIMIT + 1], 1),
        ([LIMIT, 1], 2),
        ([LIMIT // 2, LIMIT // 2, 1, LIMIT, LIMIT], 3),
        ([3 * LIMIT, 5, 5, 5], 1),
    ],
    ids=["one-byte-over", "over-on-the-last-byte", "over-mid-stream", "first-chunk-over"],
)
def test_a_chunked_body_over_the_limit_is_cut_off_once_over(sizes, read):
    """413 as soon as the count passes the limit: no later chunk is read, the app is told the client
    went away, and its own answer (to the cut-off body) is dropped."""
    app = Reader()
    client = Client(chunks(*(b"x" * n for n in sizes)))
    client.run(limited(app), http_scope(headers={"Transfer-Encoding": "chunked"}))
    assert_too_large(client)  # one answer only: the app's 400 went nowhere
    assert client.receive_calls == read
    assert app.seen == ["http.request"] * (read - 1) + ["http.disconnect"]
    assert len(app.body) <= LIMIT


def test_after_the_cut_off_every_further_receive_is_a_disconnect():
    seen = []

    async def stubborn(scope, receive, send):
        for _ in range(3):
            seen.append((await receive())["type"])

    client = Client(chunks(b"x" * (LIMIT + 1), b"y", b"z")).run(limited(stubborn), http_scope())
    assert_too_large(client)
    assert seen == ["http.disconnect"] * 3 and client.receive_calls == 1


def test_a_client_disconnect_under_the_limit_reaches_the_app_unchanged():
    app = Reader()
    messages = [{"type": "http.request", "body": b"abc", "more_body": True}, {"type": "http.disconnect"}]
    client = Client(messages).run(limited(app), http_scope())
    assert client.status == 400 and client.json() == {"error": "cut off"}  # the app's own answer
    assert app.seen == ["http.request", "http.disconnect"]


@pytest.mark.parametrize(
    "max_bytes, text",
    [
        (20 * 2**20, "20 MB"),
        (4 * 2**20, "4 MB"),
        (2**19, "0.5 MB"),
        (3 * 2**19, "1.5 MB"),
        (2**18, "0.25 MB"),
    ],
)
def test_the_refusal_names_the_limit_in_megabytes(max_bytes, text):
    client = Client().run(limited(Reader(), max_bytes), http_scope(headers={"Content-Length": str(2**30)}))
    assert_too_large(client, text)


@pytest.mark.parametrize("path", ["/info", "/classify/", "/classifyx", "/ui/upload", "/"])
def test_other_paths_are_not_bounded(path):
    app = Reader()
    body = b"x" * (LIMIT + 10)
    client = Client(chunks(body[:10], body[10:]))
    client.run(limited(app), http_scope(path, headers={"Content-Length": str(10**12)}))
    assert client.status == 200 and app.body == body


def test_only_the_given_paths_are_bounded():
    guard = limited(Reader(), paths=("/classify", "/classify_array"))
    for path, status in [("/classify", 413), ("/classify_array", 413), ("/info", 200)]:
        headers = {"Content-Length": str(LIMIT + 1)}
        client = Client(chunks(b"x" * (LIMIT + 1))).run(guard, http_scope(path, headers=headers))
        assert client.status == status, path


@pytest.mark.parametrize(
    "scope",
    [
        {"type": "lifespan", "asgi": {"version": "3.0"}},  # no path, no headers
        {"type": "websocket", "path": "/classify", "headers": [(b"content-length", b"999999999999")]},
    ],
    ids=["lifespan", "websocket"],
)
def test_non_http_scopes_pass_through_untouched(scope):
    app = Recorder()
    client = Client()
    client.run(limited(app), scope)
    assert len(app.calls) == 1
    passed_scope, receive, send = app.calls[0]
    assert passed_scope is scope
    assert receive == client.receive and send == client.send  # not wrapped
    assert client.sent == [] and client.receive_calls == 0


# --- service/bentoml_fixes.py: readable_error and JSONErrors ----------------------------------------


def validation_body(*problems: dict, title: str = "SamplesInput") -> bytes:
    return json.dumps(
        {"error": f"{len(problems)} validation error for {title}", "detail": list(problems)}
    ).encode()


def problem(loc: list, msg: str) -> dict:
    return {"type": "x", "loc": loc, "msg": msg}


TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
TWO_PROBLEMS = [problem(["top_k"], "Input should be a valid integer"), problem(["window_s"], "too short")]
A_M = b'{"loc": ["a"], "msg": "m"}'
SEVEN = [problem(["samples", "list[float]", i], f"bad {i}") for i in range(7)]

READABLE = [
    pytest.param(
        (404, b"Not Found", TEXT, "GET", "/admin", ""),
        {"error": f"Not Found: /admin {NOT_FOUND_HINT}"},
        id="404-plain-text-names-the-path-and-the-api",
    ),
    pytest.param(
        (405, b"Method Not Allowed", TEXT, "GET", "/info", "POST"),
        {"error": "Method Not Allowed: GET /info (allowed: POST)"},
        id="405-names-method-path-and-allowed",
    ),
    pytest.param(
        (405, b"Method Not Allowed", TEXT, "PUT", "/x", ""),
        {"error": "Method Not Allowed"},
        id="405-without-allow-header",
    ),
    pytest.param((500, b"", TEXT, "POST", "/info", ""), {"error": "Internal Server Error"}, id="empty-body"),
    pytest.param((503, b"  \n", "", "POST", "/info", ""), {"error": "Service Unavailable"}, id="blank-body"),
    pytest.param(
        (503, b" Runners are not ready.\n", TEXT, "GET", "/readyz", ""),
        {"error": "Runners are not ready."},
        id="plain-text-stripped",
    ),
    pytest.param((499, b"", "", "POST", "/info", ""), {"error": "Error"}, id="unknown-status"),
    pytest.param((400, b"bad \xff", TEXT, "POST", "/", ""), {"error": "bad \ufffd"}, id="not-utf8"),
    pytest.param(
        (400, b"<h1>x</h1>", "text/html", "POST", "/info", ""), {"error": "<h1>x</h1>"}, id="html-as-text"
    ),
    pytest.param(
        (415, b'[{"error": "Unsupported Media Type: application/x"}]', JSON, "POST", "/classify", ""),
        {"error": "Unsupported Media Type: application/x"},
        id="415-one-element-list",
    ),
    pytest.param(
        (413, b'{"error": "upload too large: the limit is 4 MB"}', JSON, "POST", "/classify", ""),
        {"error": "upload too large: the limit is 4 MB"},
        id="already-readable",
    ),
    pytest.param(
        (422, b'{"error": "top_k must be 1 or more", "x": 1}', JSON, "POST", "/classify", ""),
        {"error": "top_k must be 1 or more", "x": 1},
        id="other-keys-kept",
    ),
    pytest.param(
        (400, validation_body(*TWO_PROBLEMS), JSON, "POST", "/classify", ""),
        {
            "error": "top_k: Input should be a valid integer; window_s: too short",
            "detail": TWO_PROBLEMS,
        },
        id="validation-problems-listed-detail-kept",
    ),
    pytest.param(
        (400, validation_body(*SEVEN), "application/json; charset=utf-8", "POST", "/x", ""),
        {
            "error": "; ".join(f"samples.list[float].{i}: bad {i}" for i in range(SHOWN_PROBLEMS))
            + " (and 2 more)",
            "detail": SEVEN,
        },
        id="validation-first-five-and-a-count",
    ),
    pytest.param(
        (400, validation_body(problem([], "the field 'audio' must be a file")), JSON, "POST", "/x", ""),
        {
            "error": "the field 'audio' must be a file",
            "detail": [problem([], "the field 'audio' must be a file")],
        },
        id="validation-without-location",
    ),
    pytest.param(
        (400, b'{"error": "2 validation errors for X", "detail": [' + A_M + b"]}", JSON, "POST", "/x", ""),
        {"error": "a: m", "detail": [{"loc": ["a"], "msg": "m"}]},
        id="validation-plural-summary",
    ),
    pytest.param(
        (400, b'{"error": "1 validation error for X", "detail": []}', JSON, "POST", "/x", ""),
        {"error": "1 validation error for X", "detail": []},
        id="validation-without-problems-unchanged",
    ),
    pytest.param((400, b"nonsense", JSON, "POST", "/x", ""), {"error": "Bad Request"}, id="invalid-json"),
    pytest.param(
        (422, b'{"detail": "no"}', JSON, "POST", "/x", ""),
        {"error": HTTPStatus(422).phrase, "detail": {"detail": "no"}},
        id="json-without-error",
    ),
    pytest.param(
        (400, b'{"error": ""}', JSON, "POST", "/x", ""),
        {"error": "Bad Request", "detail": {"error": ""}},
        id="empty-error",
    ),
    pytest.param(
        (400, b'{"error": 5}', JSON, "POST", "/x", ""),
        {"error": "Bad Request", "detail": {"error": 5}},
        id="error-not-a-string",
    ),
    pytest.param(
        (400, b'[{"error": "a"}, {"error": "b"}]', JSON, "POST", "/x", ""),
        {"error": "Bad Request", "detail": [{"error": "a"}, {"error": "b"}]},
        id="longer-list",
    ),
    pytest.param((400, b"null", JSON, "POST", "/x", ""), {"error": "Bad Request", "detail": None}, id="null"),
]


@pytest.mark.parametrize("args, expected", READABLE)
def test_readable_error(args, expected):
    assert readable_error(*args) == expected


def test_the_404_and_405_bodies_are_rewritten_with_their_headers_fixed():
    headers = [
        (b"content-type", b"text/plain"),
        (b"content-length", b"18"),
        (b"allow", b"POST"),
        (b"x-id", b"7"),
    ]
    client = Client().run(
        JSONErrors(answering(405, b"Method Not Allowed", headers=headers)), http_scope("/info", "GET")
    )
    assert client.status == 405
    assert client.json() == {"error": "Method Not Allowed: GET /info (allowed: POST)"}
    assert client.headers["content-type"] == "application/json"
    assert client.headers["content-length"] == str(len(client.body))
    assert client.headers["allow"] == "POST" and client.headers["x-id"] == "7"
    start = next(m for m in client.sent if m["type"] == "http.response.start")
    assert [k for k, _ in start["headers"]].count(b"content-type") == 1


def test_an_error_body_in_pieces_is_joined_before_it_is_rewritten():
    app = answering(
        400,
        b'{"error": "1 validation',
        b' error for X", "detail": [{"loc": ["a"], ',
        b'"msg": "m"}]}',
        headers=[(b"content-type", b"application/json")],
    )
    client = Client().run(JSONErrors(app), http_scope("/classify_array"))
    assert client.status == 400 and client.json() == {"error": "a: m", "detail": [{"loc": ["a"], "msg": "m"}]}
    assert [m.get("more_body", False) for m in client.sent[1:]] == [False]


@pytest.mark.parametrize("status", [200, 201, 204, 301, 399])
def test_answers_under_400_pass_through_byte_for_byte(status):
    headers = [(b"content-type", b"text/plain"), (b"x-id", b"7")]
    app = answering(status, b"part one, ", b"part two", headers=headers)
    client = Client().run(JSONErrors(app), http_scope("/info"))
    assert client.sent == [
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": b"part one, ", "more_body": True},
        {"type": "http.response.body", "body": b"part two", "more_body": False},
    ]


@pytest.mark.parametrize(
    "path, method, rewritten",
    [
        ("/ui", "GET", False),
        ("/ui/", "GET", False),
        ("/ui/gradio_api/upload", "POST", False),
        ("/uix", "GET", True),
        ("/admin/ui", "GET", True),
        ("/admin", "HEAD", False),  # no body to rewrite
        ("/admin", "GET", True),
    ],
)
def test_which_requests_get_their_errors_rewritten(path, method, rewritten):
    headers = [(b"content-type", b"text/plain")]
    client = Client().run(JSONErrors(answering(404, b"Not Found", headers=headers)), http_scope(path, method))
    assert client.status == 404
    if rewritten:
        assert client.json() == {"error": f"Not Found: {path} {NOT_FOUND_HINT}"}
    else:
        assert client.body == b"Not Found" and client.headers["content-type"] == "text/plain"


def test_skip_prefixes_can_be_chosen():
    app = JSONErrors(
        answering(404, b"Not Found", headers=[(b"content-type", b"text/plain")]), skip_prefixes=("/a",)
    )
    assert Client().run(app, http_scope("/a/b", "GET")).body == b"Not Found"
    assert Client().run(app, http_scope("/ui", "GET")).json()["error"].startswith("Not Found: /ui ")


@pytest.mark.parametrize(
    "scope",
    [{"type": "lifespan", "asgi": {"version": "3.0"}}, {"type": "websocket", "path": "/classify"}],
    ids=["lifespan", "websocket"],
)
def test_non_http_scopes_pass_through_json_errors(scope):
    app = Recorder()
    client = Client()
    client.run(JSONErrors(app), scope)
    passed_scope, receive, send = app.calls[0]
    assert passed_scope is scope and receive == client.receive and send == client.send


# --- service/inputs.py behind a BentoML-like app, both middlewares as service/service.py adds them ---


def bentoml_like(cls):
    """The endpoint BentoML 1.4 builds around an input spec: a ValidationError answers 400."""

    async def endpoint(request: Request) -> JSONResponse:
        try:
            parsed = await cls.from_http_request(request, None)
        except ValidationError as exc:
            data = {
                "error": f"{exc.error_count()} validation error for {exc.title}",
                "detail": exc.errors(include_context=False, include_input=False),
            }
            return JSONResponse(data, status_code=400)
        fields = {name: getattr(parsed, name) for name in type(parsed).model_fields}
        if isinstance(fields.get("audio"), Path):
            audio = fields.pop("audio")
            fields["audio"] = {"name": audio.name, "dir": str(audio.parent), "content": audio.read_text()}
        return JSONResponse(fields)

    return endpoint


@pytest.fixture(scope="module")
def uploads(tmp_path_factory):
    """Where BentoML's file decoder puts uploads (outside a real request it has no directory)."""
    directory = tmp_path_factory.mktemp("uploads")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("bentoml._internal.context.request_temp_dir", lambda: str(directory))
        yield directory


@pytest.fixture(scope="module")
def api(uploads) -> TestClient:
    routes = [
        Route("/classify", bentoml_like(AudioUpload), methods=["POST"]),
        Route("/classify_array", bentoml_like(SamplesInput), methods=["POST"]),
        Route("/info", bentoml_like(NoInput), methods=["POST"]),
    ]
    app = UploadLimit(Starlette(routes=routes), max_bytes=LIMIT, paths=("/classify", "/classify_array"))
    return TestClient(JSONErrors(app, skip_prefixes=("/ui",)))


def form_part(name: str, value: bytes, filename: str | None = None, boundary: str = "b0undary") -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"


def multipart(*parts: bytes, boundary: str = "b0undary", content_type: str = "multipart/form-data") -> dict:
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return {"content": body, "headers": {"Content-Type": f"{content_type}; boundary={boundary}"}}


def raw(content: bytes | str, content_type: str) -> dict:
    return {"content": content, "headers": {"Content-Type": content_type}}


def clip(**form) -> dict:
    return {"files": {"audio": ("clip.wav", b"RIFF....WAVE")}, "data": form}


OK = {"samples": [0.1, 0.2], "sampling_rate": 16000}
BAD_NUMBER = "Value error, a number is expected, not true or false"

REFUSALS = [
    # /classify: the body must be multipart with a file in `audio`.
    ("text-body", "/classify", raw("hello", "text/plain"), "this one is text/plain"),
    ("json-body", "/classify", {"json": {"audio": "clip.wav"}}, "this one is application/json"),
    ("urlencoded", "/classify", {"data": {"audio": "x"}}, "this one is application/x-www-form-urlencoded"),
    (
        "no-body",
        "/classify",
        {},
        "send a multipart/form-data body with the clip in the file field 'audio' "
        "(this one is without a Content-Type)",
    ),
    (
        "no-boundary",
        "/classify",
        raw(b"--x\r\n", "multipart/form-data"),
        "malformed multipart body: Missing boundary",
    ),
    (
        "part-without-name",
        "/classify",
        raw(
            b"--x\r\nContent-Disposition: form-data\r\n\r\nv\r\n--x--\r\n", "multipart/form-data; boundary=x"
        ),
        'malformed multipart body: The Content-Disposition header field "name" must be provided.',
    ),
    (
        "audio-as-text",
        "/classify",
        multipart(form_part("audio", b"http://127.0.0.1/clip.wav")),
        "the field 'audio' must be a file (a part with a filename), not text",
    ),
    (
        "audio-twice",
        "/classify",
        {"files": [("audio", ("a.wav", b"1")), ("audio", ("b.wav", b"2"))]},
        "field(s) given more than once: audio",
    ),
    (
        "options-twice",
        "/classify",
        multipart(form_part("audio", b"1", "a.wav"), *(form_part(n, b"2") for n in ["top_k", "hop_s"] * 2)),
        "field(s) given more than once: hop_s, top_k",
    ),
    ("unknown-field", "/classify", clip(foo="1"), f"unknown field(s) foo: {FORM_FIELDS}"),
    ("unknown-fields", "/classify", clip(foo="1", bar="2"), f"unknown field(s) foo, bar: {FORM_FIELDS}"),
    (
        "file-in-another-field",
        "/classify",
        {"files": {"file": ("clip.wav", b"RIFF")}},
        f"unknown field(s) file: {FORM_FIELDS}",
    ),
    ("no-audio", "/classify", multipart(form_part("top_k", b"2")), "audio: Field required"),
    ("top_k-text", "/classify", clip(top_k="two"), "top_k: Input should be a valid integer"),
    ("top_k-fraction", "/classify", clip(top_k="1.5"), "top_k: Input should be a valid integer"),
    ("form-top_k-true", "/classify", clip(top_k="true"), "top_k: Input should be a valid integer"),
    ("window_s-text", "/classify", clip(window_s="2s"), "window_s: Input should be a valid number"),
    (
        "two-bad-options",
        "/classify",
        clip(top_k="x", hop_s="y"),
        "top_k: Input should be a valid integer, unable to parse string as an integer; "
        "hop_s: Input should be a valid number",
    ),
    # /classify_array: a JSON object with the right fields.
    ("multipart-to-array", "/classify_array", clip(), "send a JSON body (files go to /classify)"),
    ("not-json", "/classify_array", raw("nonsense", "application/json"), "Invalid JSON: expected ident"),
    ("json-list", "/classify_array", {"json": [0.1, 0.2]}, "Input should be an object"),
    ("json-null", "/classify_array", raw("null", "application/json"), "Input should be an object"),
    (
        "empty-object",
        "/classify_array",
        {"json": {}},
        "samples: Field required; sampling_rate: Field required",
    ),
    ("empty-body", "/classify_array", {}, "samples: Field required; sampling_rate: Field required"),
    (
        "unknown-json-field",
        "/classify_array",
        {"json": {**OK, "sr": 1}},
        f"unknown field(s) sr: {JSON_FIELDS}",
    ),
    (
        "unknown-beats-missing",
        "/classify_array",
        {"json": {"sr": 1, "x": 2}},
        f"unknown field(s) sr, x: {JSON_FIELDS}",
    ),
    ("rate-true", "/classify_array", {"json": {**OK, "sampling_rate": True}}, f"sampling_rate: {BAD_NUMBER}"),
    ("json-top_k-true", "/classify_array", {"json": {**OK, "top_k": True}}, f"top_k: {BAD_NUMBER}"),
    ("window_s-false", "/classify_array", {"json": {**OK, "window_s": False}}, f"window_s: {BAD_NUMBER}"),
    ("hop_s-true", "/classify_array", {"json": {**OK, "hop_s": True}}, f"hop_s: {BAD_NUMBER}"),
    (
        "rate-fraction",
        "/classify_array",
        {"json": {**OK, "sampling_rate": 16000.5}},
        "sampling_rate: Input should be a valid integer, got a number with a fractional part",
    ),
    (
        "rate-text",
        "/classify_array",
        {"json": {**OK, "sampling_rate": "fast"}},
        "sampling_rate: Input should be",
    ),
    (
        "rate-null",
        "/classify_array",
        {"json": {**OK, "sampling_rate": None}},
        "sampling_rate: Input should be",
    ),
    (
        "samples-text",
        "/classify_array",
        {"json": {**OK, "samples": "0.1, 0.2"}},
        "samples.list[float]: Input should be a valid array",
    ),
    (
        "samples-3d",
        "/classify_array",
        {"json": {**OK, "samples": [[[0.1]]]}},
        "samples.list[list[float]].0.0:",
    ),
    (
        "seven-problems",
        "/classify_array",
        {"json": {"samples": ["a"] * 7, "sampling_rate": 1}},
        "samples.list[float].4: Input should be a valid number, unable to parse string as a number (and ",
    ),
    # /info: nothing, or {}.
    ("info-field", "/info", {"json": {"verbose": True}}, "unknown field(s) verbose: it takes no fields"),
    ("info-text", "/info", raw("please", "text/plain"), "Invalid JSON: expected value at line 1 column 1"),
    ("info-list", "/info", {"json": []}, "Input should be an object"),
]


@pytest.mark.parametrize("path, request_, message", [pytest.param(*c[1:], id=c[0]) for c in REFUSALS])
def test_a_bad_body_is_refused_with_400_and_a_readable_error(api, path, request_, message):
    response = api.post(path, **request_)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert message in body["error"], body
    assert isinstance(body["detail"], list) and body["detail"], body  # the problems themselves, kept
    assert "validation error for" not in body["error"]


@pytest.mark.parametrize(
    "url, message",
    [
        (
            "/classify?foo=1",
            f"unknown query parameter(s) foo: /classify takes no query parameters ({FORM_FIELDS}, ",
        ),
        ("/classify?b=1&a=2&b=3", "unknown query parameter(s) a, b: /classify takes no query parameters"),
        (
            "/classify_array?top_k=1",
            f"unknown query parameter(s) top_k: /classify_array takes no query parameters "
            f"({JSON_FIELDS}, in the body)",
        ),
        (
            "/info?verbose=1",
            "unknown query parameter(s) verbose: /info takes no query parameters "
            "(it takes no fields, in the body)",
        ),
    ],
)
def test_query_parameters_are_refused_by_name(api, url, message):
    body = {"/classify": clip(), "/classify_array": {"json": OK}, "/info": {}}[url.split("?")[0]]
    response = api.post(url, **body)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_an_upload_is_parsed_into_typed_options_and_a_file(api, uploads):
    response = api.post(
        "/classify", files={"audio": ("my clip.wav", b"RIFF data")}, data={"top_k": "2", "window_s": "1.5"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert {k: body[k] for k in ("top_k", "window_s", "hop_s", "segments")} == {
        "top_k": 2,
        "window_s": 1.5,
        "hop_s": None,
        "segments": None,
    }
    assert body["audio"]["content"] == "RIFF data"
    assert body["audio"]["dir"] == str(uploads) and body["audio"]["name"].endswith("upload.wav")


def test_empty_optional_fields_mean_not_given(api):
    response = api.post("/classify", **clip(top_k="", window_s="", hop_s=""))
    assert response.status_code == 200, response.text
    assert [response.json()[k] for k in ("top_k", "window_s", "hop_s")] == [None, None, None]


def test_the_multipart_media_type_is_matched_without_regard_to_case(api):
    request = multipart(
        form_part("audio", b"x", "a.flac"), form_part("hop_s", b"0.5"), content_type="Multipart/Form-Data"
    )
    response = api.post("/classify", **request)
    assert response.status_code == 200, response.text
    assert response.json()["hop_s"] == 0.5 and response.json()["audio"]["name"].endswith("upload.flac")


@pytest.mark.parametrize(
    "filename, stored",
    [
        ("clip.wav", "upload.wav"),
        ("CLIP.FLAC", "upload.FLAC"),
        ("a" * 300 + ".wav", "upload.wav"),
        ("../../etc/passwd", "upload"),
        ("clip.wav\x00.mp3", "upload.mp3"),
        ("archive.tar.gz", "upload.gz"),
        ("x", "upload"),
        (".wav", "upload"),  # a dot file: no extension
        ("clip.", "upload"),
        ("clip.verylongext", "upload"),
        ("clip.wa v", "upload"),
        ("clip.wäv", "upload"),
        ("", "upload"),
        (None, "upload"),
    ],
)
def test_an_upload_is_stored_as_upload_plus_a_plain_extension(filename, stored):
    assert _upload_name(filename) == stored


def test_any_file_name_is_stored_under_the_upload_directory(api, uploads):
    response = api.post("/classify", files={"audio": ("../../../../etc/passwd", b"x")})
    assert response.status_code == 200, response.text
    audio = response.json()["audio"]
    assert audio["dir"] == str(uploads) and audio["name"].endswith("upload") and "passwd" not in audio["name"]


@pytest.mark.parametrize(
    "request_, expected",
    [
        ({"json": OK}, {**OK, "top_k": None, "window_s": None, "hop_s": None, "segments": None}),
        (
            {"json": {"samples": [[0.1, -0.1], [0, 1]], "sampling_rate": 44100.0, "top_k": 2, "hop_s": 1}},
            {
                "samples": [[0.1, -0.1], [0.0, 1.0]],
                "sampling_rate": 44100,
                "top_k": 2,
                "window_s": None,
                "hop_s": 1.0,
                "segments": None,
            },
        ),
        (  # any media type but multipart is read as JSON
            raw(json.dumps({**OK, "window_s": None}), "text/plain"),
            {**OK, "top_k": None, "window_s": None, "hop_s": None, "segments": None},
        ),
    ],
    ids=["mono", "frames-of-channels", "text-plain-json"],
)
def test_a_json_body_is_parsed_into_typed_fields(api, request_, expected):
    response = api.post("/classify_array", **request_)
    assert response.status_code == 200, response.text
    assert response.json() == expected


@pytest.mark.parametrize(
    "request_", [{}, {"json": {}}, raw("{}", "text/plain")], ids=["empty", "object", "text"]
)
def test_info_takes_nothing(api, request_):
    response = api.post("/info", **request_)
    assert response.status_code == 200 and response.json() == {}


def test_paths_and_methods_outside_the_api_get_json_errors(api):
    wrong_method = api.get("/info")
    assert (wrong_method.status_code, wrong_method.json()) == (
        405,
        {"error": "Method Not Allowed: GET /info (allowed: POST)"},
    )
    unknown = api.post("/classify/now")
    assert (unknown.status_code, unknown.json()) == (
        404,
        {"error": f"Not Found: /classify/now {NOT_FOUND_HINT}"},
    )


@pytest.mark.parametrize("path", ["/classify", "/classify_array"])
def test_a_body_over_the_limit_gets_413_through_the_whole_stack(api, path):
    big = {"json": {**OK, "samples": [0.0] * (LIMIT // 4)}}
    request = {"files": {"audio": ("a.wav", bytes(LIMIT))}} if path == "/classify" else big
    response = api.post(path, **request)
    assert response.status_code == 413
    assert response.json() == {"error": "upload too large: the limit is 0.25 MB"}


def test_a_chunked_body_over_the_limit_gets_413_and_the_cut_off_parse_is_dropped(api):
    body = json.dumps({**OK, "samples": [0.0] * (LIMIT // 4)}).encode()
    response = api.post(
        "/classify_array",
        content=(body[i : i + 4096] for i in range(0, len(body), 4096)),
        headers={"Content-Type": JSON},
    )
    assert "content-length" not in response.request.headers  # it went out chunked
    assert response.status_code == 413
    assert response.json() == {"error": "upload too large: the limit is 0.25 MB"}


def parse(cls, messages: list[dict], content_type: str = JSON, query: bytes = b""):
    """`cls.from_http_request` on a Request built from a scope and `messages`."""
    scope = {**http_scope(headers={"Content-Type": content_type}), "query_string": query}
    client = Client(messages)
    return asyncio.run(cls.from_http_request(Request(scope, client.receive), None))


@pytest.mark.parametrize(
    "cls, content_type",
    [
        (SamplesInput, JSON),
        (NoInput, JSON),
        (AudioUpload, "multipart/form-data; boundary=b0undary"),
    ],
)
def test_a_body_cut_off_by_the_client_is_a_refusal_not_a_crash(cls, content_type):
    head = b'--b0undary\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n\r\nRIFF'
    messages = [{"type": "http.request", "body": head, "more_body": True}]  # then the client is gone
    with pytest.raises(ValidationError) as caught:
        parse(cls, messages, content_type)
    assert caught.value.title == cls.__name__
    assert [e["msg"] for e in caught.value.errors()] == [CUT_OFF]


def test_a_request_built_by_hand_parses_like_one_from_the_server():
    parsed = parse(SamplesInput, chunks(b'{"samples": [0.5], ', b'"sampling_rate": 8000, "top_k": 3}'))
    assert (parsed.samples, parsed.sampling_rate, parsed.top_k, parsed.window_s) == ([0.5], 8000, 3, None)
    with pytest.raises(ValidationError, match="unknown query parameter"):
        parse(NoInput, chunks(b""), query=b"a=1")


def test_a_refusal_is_one_validation_error_carrying_the_message():
    err = refusal("AudioUpload", "field(s) given more than once: audio")
    assert isinstance(err, ValidationError) and err.title == "AudioUpload"
    assert err.errors(include_url=False) == [
        {"type": "bad_request", "loc": (), "msg": "field(s) given more than once: audio", "input": None}
    ]


@pytest.mark.parametrize(
    "cls, accepted, required",
    [
        (AudioUpload, FORM_FIELDS, ["audio"]),
        (SamplesInput, JSON_FIELDS, ["samples", "sampling_rate"]),
        (NoInput, "it takes no fields", None),
    ],
)
def test_the_accepted_fields_are_named_required_first_and_the_schema_is_closed(cls, accepted, required):
    assert cls._accepted() == accepted
    schema = cls.model_json_schema()
    assert schema["additionalProperties"] is False
    assert schema.get("required") == required


def test_the_schema_documents_the_bounds_pydantic_does_not_enforce():
    props = SamplesInput.model_json_schema()["properties"]
    assert props["top_k"]["minimum"] == 1
    assert props["window_s"]["minimum"] == 0.5 and props["hop_s"]["minimum"] == 0.1
    assert (props["sampling_rate"]["minimum"], props["sampling_rate"]["maximum"]) == (1_000, 384_000)
    # ...and not enforced here: the API answers them with its own 422 later
    assert parse(SamplesInput, chunks(json.dumps({**OK, "top_k": 0, "sampling_rate": 5}).encode())).top_k == 0


# --- service/settings.py -----------------------------------------------------------------------------

SER_VARIABLES = [
    "SER_MODEL_TAG",
    "SER_MAX_SECONDS",
    "SER_MAX_UPLOAD_MB",
    "SER_MAX_BATCH_SIZE",
    "SER_MAX_LATENCY_MS",
    "SER_PRECISION",
    "SER_DEVICE",
    "SER_BACKEND",
    "SER_THREADS",
]


@pytest.fixture
def env(monkeypatch):
    """An environment without any SER_ setting, and no GPU; returns monkeypatch.setenv."""
    for name in SER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return monkeypatch.setenv


def test_the_defaults(env):
    assert Settings.from_env() == Settings(
        model_tag="ser-emotion:latest",
        max_seconds=60.0,
        max_upload_bytes=20 * 2**20,
        max_batch_size=16,
        max_latency_ms=60_000,
        precision="auto",
        device="cpu",
        backend="auto",
    )


def test_empty_variables_mean_the_defaults(env):
    for name in SER_VARIABLES:
        env(name, "")
    assert Settings.from_env() == Settings("ser-emotion:latest", 60.0, 20 * 2**20, 16, 60_000, "auto", "cpu")


def test_the_device_defaults_to_cuda_where_a_gpu_is_visible(env, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert Settings.from_env().device == "cuda"
    env("SER_DEVICE", "cpu")
    assert Settings.from_env().device == "cpu"


@pytest.mark.parametrize(
    "name, value, field, expected",
    [
        ("SER_MODEL_TAG", "other:v2", "model_tag", "other:v2"),
        ("SER_MAX_SECONDS", "20", "max_seconds", 20.0),
        ("SER_MAX_SECONDS", " 7.5 ", "max_seconds", 7.5),
        ("SER_MAX_UPLOAD_MB", "4", "max_upload_bytes", 4 * 2**20),
        ("SER_MAX_UPLOAD_MB", "0.5", "max_upload_bytes", 2**19),
        ("SER_MAX_UPLOAD_MB", "1e3", "max_upload_bytes", 1000 * 2**20),
        ("SER_MAX_BATCH_SIZE", "1", "max_batch_size", 1),
        ("SER_MAX_LATENCY_MS", "250", "max_latency_ms", 250),
        ("SER_PRECISION", "int8", "precision", "int8"),
        ("SER_PRECISION", "bf16", "precision", "bf16"),
        ("SER_DEVICE", "cuda:1", "device", "cuda:1"),
        ("SER_BACKEND", "onnx", "backend", "onnx"),
        ("SER_THREADS", "16", "threads", 16),
    ],
)
def test_each_variable_sets_its_field(env, name, value, field, expected):
    env(name, value)
    settings = Settings.from_env()
    assert getattr(settings, field) == expected
    assert type(getattr(settings, field)) is type(expected)


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("SER_MAX_SECONDS", "sixty", "SER_MAX_SECONDS must be a number, got 'sixty'"),
        ("SER_MAX_UPLOAD_MB", "20MB", "SER_MAX_UPLOAD_MB must be a number, got '20MB'"),
        ("SER_MAX_BATCH_SIZE", "many", "SER_MAX_BATCH_SIZE must be a number, got 'many'"),
        ("SER_MAX_LATENCY_MS", "1s", "SER_MAX_LATENCY_MS must be a number, got '1s'"),
        ("SER_MAX_SECONDS", "1,5", "SER_MAX_SECONDS must be a number, got '1,5'"),
        ("SER_PRECISION", "FP32", "SER_PRECISION must be one of auto, fp32, bf16, int8, got 'FP32'"),
        ("SER_PRECISION", "fp16", "SER_PRECISION must be one of auto, fp32, bf16, int8, got 'fp16'"),
        ("SER_BACKEND", "ort", "SER_BACKEND must be one of auto, onnx, torch, got 'ort'"),
        ("SER_MAX_BATCH_SIZE", "0", "SER_MAX_BATCH_SIZE must be 1 or more, got 0"),
        ("SER_THREADS", "0", "SER_THREADS must be 1 or more, got 0"),
        ("SER_MAX_BATCH_SIZE", "-3", "SER_MAX_BATCH_SIZE must be a finite number, 0 or more, got '-3'"),
    ],
)
def test_a_bad_setting_is_a_one_line_config_error_naming_the_variable(env, name, value, message):
    env(name, value)
    with pytest.raises(ConfigError) as caught:
        Settings.from_env()
    assert str(caught.value) == message and first_line(caught.value) == message


@pytest.mark.parametrize(
    "name, value",
    [
        ("SER_MAX_SECONDS", "nan"),
        ("SER_MAX_SECONDS", "-1"),
        ("SER_MAX_UPLOAD_MB", "nan"),
        ("SER_MAX_UPLOAD_MB", "inf"),
        ("SER_MAX_UPLOAD_MB", "-1"),
        ("SER_MAX_BATCH_SIZE", "nan"),
        ("SER_MAX_BATCH_SIZE", "inf"),
        ("SER_MAX_LATENCY_MS", "nan"),
        ("SER_MAX_LATENCY_MS", "inf"),
    ],
)
def test_a_non_finite_or_negative_limit_is_a_config_error(env, name, value):
    env(name, value)
    with pytest.raises(ConfigError, match=name):
        Settings.from_env()


# --- pipeline/config.py (what tests/test_config.py does not cover) and pipeline/errors.py ------------


@pytest.mark.parametrize(
    "override, section, key, value",
    [
        ("train.learning_rate=1", "train", "learning_rate", 1.0),  # an int where a float goes
        ("train.learning_rate=3e-4", "train", "learning_rate", 3e-4),  # YAML 1.1 reads it as a string
        ("train.head_learning_rate=null", "train", "head_learning_rate", None),
        ("train.head_learning_rate=2", "train", "head_learning_rate", 2.0),
        ("data.fold=3", "data", "fold", 3),
        ("data.fold=~", "data", "fold", None),
        ("model.trust_remote_code=yes", "model", "trust_remote_code", True),
        ("model.backbone=facebook/wav2vec2-base", "model", "backbone", "facebook/wav2vec2-base"),
        ("model.backbone=a=b", "model", "backbone", "a=b"),  # split at the first =
        ("model.backbone=", "model", "backbone", None),
        ("train.report_to=[]", "train", "report_to", []),
        ("train.report_to=[wandb, tensorboard]", "train", "report_to", ["wandb", "tensorboard"]),
        ("model.small={hidden_size: 32}", "model", "small", {"hidden_size": 32}),
        ("train.class_weights=none", "train", "class_weights", "none"),  # a string, not null
    ],
)
def test_an_override_is_read_as_yaml_and_typed(override, section, key, value):
    got = getattr(getattr(load_config(None, [override]), section), key)
    assert got == value and type(got) is type(value)


def test_later_overrides_win_and_others_keep_their_defaults():
    cfg = load_config(None, ["train.epochs=3", "train.epochs=5"])
    assert cfg.train.epochs == 5
    assert cfg.to_dict()["train"] | {"epochs": load_config().train.epochs} == load_config().to_dict()["train"]
    assert set(cfg.to_dict()) == {"data", "model", "train"}


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.batch_size=2.0", "config key 'train.batch_size' expects int, got 2.0"),
        ("train.batch_size=", "config key 'train.batch_size' expects int, got None"),
        ("train.epochs=2.0", "config key 'train.epochs' expects int or null, got 2.0"),
        ("train.learning_rate=fast", "config key 'train.learning_rate' expects float, got 'fast'"),
        ("train.learning_rate=true", "config key 'train.learning_rate' expects float, got True"),
        (
            "train.head_learning_rate=[1]",
            "config key 'train.head_learning_rate' expects float or null, got [1]",
        ),
        ("data.fold=x", "config key 'data.fold' expects int or null, got 'x'"),
        ("model.trust_remote_code=1", "config key 'model.trust_remote_code' expects bool, got 1"),
        ("train.report_to=wandb", "config key 'train.report_to' expects list, got 'wandb'"),
        ("model.small=3", "config key 'model.small' expects dict, got 3"),
        ("train.epochs.x=3", "unknown config section 'epochs' in 'train.epochs.x=3'"),
        ("model.small.hidden_size=32", "unknown config section 'small' in 'model.small.hidden_size=32'"),
        ("train.epochs", "override 'train.epochs' must look like section.key=value"),
        ("=3", "override '=3' must look like section.key=value"),
        (
            "data.nosuch=1",
            "unknown config key 'data.nosuch'; known: fold, level_shift, max_eval_seconds, "
            "max_train_seconds, mel_warp, noise_snr_db, path, speed_perturbation",
        ),
    ],
)
def test_a_bad_override_is_a_one_line_config_error(override, message):
    with pytest.raises(ConfigError) as caught:
        load_config(None, [override])
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "text, message",
    [
        ("- 1\n- 2\n", "must hold a mapping"),
        ("just text\n", "must hold a mapping"),
        ("train: 3\n", "config section 'train' must be a mapping"),
        ("model:\n  small:\n    - 1\n", "config key 'model.small' expects dict, got [1]"),
        ("data:\n  colour: red\n", "unknown config key 'data.colour'; known: fold,"),
        ("trian:\n  epochs: 3\n", "unknown config key 'trian'; known: data, model, train"),
        ("train:\n  epochs: [\n", "is not valid YAML"),
        ("train:\n\tepochs: 3\n", "is not valid YAML"),
    ],
)
def test_a_bad_config_file_is_a_config_error_with_a_one_line_first_line(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    line = first_line(caught.value)
    assert message in line and "\n" not in line
    if "YAML" in message:
        assert line.startswith(f"config file {path} is not valid YAML: ")


def test_a_missing_config_file_is_named(tmp_path):
    missing = tmp_path / "none.yaml"
    with pytest.raises(ConfigError, match=f"^{re.escape(f'config file not found: {missing}')}$"):
        load_config(missing)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path)  # a directory


@pytest.mark.parametrize("text", ["", "# nothing\n", "null\n"])
def test_an_empty_config_file_means_the_defaults(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert load_config(path).to_dict() == load_config().to_dict()


@pytest.mark.parametrize("where", ["override", "file"])
def test_mixed_precision_no_is_accepted(tmp_path, where):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  mixed_precision: no\n")
    cfg = load_config(None, ["train.mixed_precision=no"]) if where == "override" else load_config(path)
    assert cfg.train.mixed_precision == "no"


@pytest.mark.parametrize("override", ["train.report_to=[a", "model.small={a: 1", "model.backbone='x"])
def test_an_override_with_malformed_yaml_is_a_config_error(override):
    with pytest.raises(ConfigError, match=override.split("=")[0]):
        load_config(None, [override])


@pytest.mark.parametrize(
    "err, line",
    [
        (ValueError("first\nsecond"), "first"),
        (ValueError("\n  padded  \nnext"), "padded  "),
        (ValueError(""), "ValueError"),
        (ConfigError("   \n  "), "ConfigError"),
        (LimitError("upload: truncated\ndetails"), "upload: truncated"),
        (KeyError("k"), "'k'"),
        (OSError(2, "No such file"), "[Errno 2] No such file"),
    ],
)
def test_first_line(err, line):
    assert first_line(err) == line


# --- service/bentoml_fixes.py: what BentoML logs as "Exception on <path> [<method>]" ---------------


def logged_by_bentoml(exc: Exception, path: str = "/classify_array") -> str:
    """What BentoML's `log_exception` writes for `exc` through a logger with the filter."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
    logger = logging.Logger(BENTOML_ERRORS)
    logger.addFilter(RefusalsAsWarnings())
    logger.addHandler(handler)
    try:
        raise exc
    except Exception:
        logger.error("Exception on %s [%s]", path, "POST", exc_info=True)
    return out.getvalue()


def pydantic_refusal() -> ValidationError:
    try:
        SamplesInput.model_validate_json('{"samples": [0.1], "sampling_rate": "fast"}')
    except ValidationError as err:
        return err
    raise AssertionError("validated")


@pytest.mark.parametrize(
    "exc, line",
    [
        (
            pydantic_refusal(),
            "POST /classify_array: 400 sampling_rate: Input should be a valid integer, "
            "unable to parse string as an integer",
        ),
        (
            refusal("NoInput", "unknown field(s) x: it takes no fields"),
            "POST /classify_array: 400 unknown field(s) x",
        ),
        (
            BentoMLException("pickle is not allowed", error_code=HTTPStatus.UNSUPPORTED_MEDIA_TYPE),
            "POST /classify_array: 415 pickle is not allowed",
        ),
        (ServiceUnavailable("process is overloaded"), "POST /classify_array: 503 process is overloaded"),
    ],
)
def test_a_refusal_is_logged_as_one_warning_line(exc, line):
    """BentoML logged a bad sampling_rate as an ERROR with pydantic's traceback (18 lines)."""
    logged = logged_by_bentoml(exc)
    assert logged.startswith(f"[WARNING] {line}") and logged.count("\n") == 1, logged


@pytest.mark.parametrize(
    "exc", [RuntimeError("a bug"), BentoMLException("model failed"), ZeroDivisionError("division by zero")]
)
def test_a_server_error_keeps_its_error_and_traceback(exc):
    logged = logged_by_bentoml(exc)
    assert logged.startswith("[ERROR] Exception on /classify_array [POST]\nTraceback"), logged


def test_the_filter_is_installed_once():
    logger = logging.getLogger(BENTOML_ERRORS)
    log_refusals_as_warnings()
    log_refusals_as_warnings()
    assert sum(isinstance(f, RefusalsAsWarnings) for f in logger.filters) == 1


def test_the_error_classes():
    assert issubclass(ConfigError, SerError) and issubclass(AudioError, SerError)
    assert issubclass(SerError, Exception)
    assert not issubclass(ConfigError, AudioError)
    assert status_of(AudioError("bad")) == 400 and str(AudioError("bad")) == "bad"
    assert status_of(LimitError("long")) == 422 and status_of(OptionError("top_k")) == 422
    assert str(ConfigError("x")) == "x"


@pytest.mark.parametrize(
    "seconds, decimals, up, shown",
    [
        (20.04, 1, True, "20.1"),  # past a 20-s maximum: never "20.0"
        (20.0, 1, True, "20.0"),
        (0.1 + 0.2, 1, True, "0.3"),  # 0.30000000000000004: a hair over an exact value stays on it
        (1 - 0.9, 1, False, "0.1"),  # 0.09999999999999998: a hair under it too
        (0.0999, 3, False, "0.099"),  # under a 0.1-s minimum: never "0.100"
        (0.1, 3, False, "0.100"),
        (36000.0, 1, True, "36000.0"),
    ],
)
def test_seconds_past_rounds_away_from_the_limit(seconds, decimals, up, shown):
    assert seconds_past(seconds, decimals, up) == shown


@pytest.mark.parametrize("batch_cost, merges", [(0.5, True), (0.97, False)], ids=["pays", "does-not-pay"])
def test_the_dispatcher_merges_requests_only_where_merging_measurably_pays(batch_cost, merges):
    """A single call is measured first, then a merged one; afterwards the cheaper way per second of
    audio is chosen (merged within 0.9x of single), except every 16th choice, which checks the other."""
    from service.dispatcher import MergeRule

    rule = MergeRule()
    choices = []
    for _ in range(64):
        merged = rule.merge()
        choices.append(merged)
        clips = 4 if merged else 1
        rule.observe(merged, clips * (batch_cost if merged else 1.0), audio_samples=clips * 48_000)
    assert choices[:2] == [False, True]  # measure both
    steady = choices[2:]
    assert steady.count(merges) == len(steady) - len(steady) // 16  # the rest explore the other way
