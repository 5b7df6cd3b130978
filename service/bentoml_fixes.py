"""What BentoML 1.4 does not do for this API, done here: each fix below holds for BentoML
>=1.4.30,<1.5 (checked up to 1.4.40; pyproject.toml pins that range) with Gradio >=6.0,<7.

- `JSONErrors`: every error answer is `{"error": "<what is wrong>"}`. BentoML and Starlette answer
  plain text for an unknown path (404) or method (405), `[{"error": ...}]` for a 4xx
  BentoMLException (415 for a pickle body), and for a body that fails validation an `error` that
  only counts the problems ("1 validation error for X"), the problems in `detail` (kept).
- `UploadLimit`: BentoML has no request-size limit: larger bodies get 413.
- `RefusalsAsWarnings`: BentoML logs every exception an API raises as `Exception on <path>
  [<method>]` at ERROR with a traceback, refused requests included; those become one WARNING line.
- `Route`: a WebSocket endpoint at a path of its own (a mounted app answers only `path/`).
- `GetAsPost`: BentoML routes an API by POST only; `GET /info` is answered as `POST /info`.
- `RewrittenJSON`: BentoML's OpenAPI document (`/docs.json`) declares 200, 400, 404 and 500 for
  every API, names the version "None" and knows no WebSocket; it is completed on its way out.
- `DemoApp`: the Gradio demo, mounted as a Starlette app built in the worker only.
- `bound_metric_paths`: BentoML labels its request metrics with the raw path, so every path a
  client makes up became a series of its own on `/metrics`, for good (300 random paths: 6 KB to
  1.2 MB); they are labelled by the route they match instead.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from bentoml.exceptions import BentoMLException, ServiceUnavailable
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

VALIDATION_SUMMARY = re.compile(r"\d+ validation errors? for ")
SHOWN_PROBLEMS = 5
NOT_FOUND_HINT = "(the API: POST /classify, POST /classify_array, POST /info; docs at /)"


def _problem(error: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in error.get("loc") or ())
    return f"{where}: {error.get('msg')}" if where else str(error.get("msg"))


def problems_message(problems: list) -> str:
    """Validation problems (pydantic's `errors()`) in one line: the first few, and how many more."""
    shown = "; ".join(_problem(p) for p in problems[:SHOWN_PROBLEMS] if isinstance(p, dict))
    more = len(problems) - SHOWN_PROBLEMS
    return shown + (f" (and {more} more)" if more > 0 else "")


def readable_error(status: int, body: bytes, content_type: str, method: str, path: str, allow: str) -> dict:
    """The JSON object to answer instead of `body` (`body` itself when it already is one)."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    if not content_type.startswith("application/json"):
        text = body.decode("utf-8", "replace").strip() or phrase
        if status == 404:
            text = f"{text}: {path} {NOT_FOUND_HINT}"
        elif status == 405 and allow:
            text = f"{text}: {method} {path} (allowed: {allow})"
        return {"error": text}
    try:
        data = json.loads(body)
    except ValueError:
        return {"error": phrase}
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
        data = data[0]  # a 4xx BentoMLException's body
    if not isinstance(data, dict) or not isinstance(data.get("error"), str) or not data["error"]:
        return {"error": phrase, "detail": data}
    problems = data.get("detail")
    if VALIDATION_SUMMARY.match(data["error"]) and isinstance(problems, list) and problems:
        return {**data, "error": problems_message(problems)}
    return data


def rewriting(send: Send, hold: Callable[[int], bool], rewrite: Callable[[Message, bytes], bytes]) -> Send:
    """`send`, but a response whose status `hold` picks goes out as a JSON body `rewrite(start,
    body)` of its start message and whole body."""
    start: Message | None = None
    chunks: list[bytes] = []

    async def rewriting_send(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start" and hold(message["status"]):
            start = message  # held back until the whole body is known
        elif start is None or message["type"] != "http.response.body":
            await send(message)
        else:
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                body = rewrite(start, b"".join(chunks))
                kept = [
                    (k, v)
                    for k, v in start["headers"]
                    if k.lower() not in (b"content-type", b"content-length")
                ]
                json_headers = [
                    (b"content-type", b"application/json"),
                    (b"content-length", b"%d" % len(body)),
                ]
                await send({**start, "headers": kept + json_headers})
                await send({"type": "http.response.body", "body": body, "more_body": False})

    return rewriting_send


class JSONErrors:
    """Rewrite error answers (status >= 400) of the paths outside `skip_prefixes` (the Gradio demo
    keeps its own) into `{"error": "..."}`; other answers pass through untouched."""

    def __init__(self, app: ASGIApp, skip_prefixes: tuple[str, ...] = ("/ui",)):
        self.app, self.skip_prefixes = app, skip_prefixes

    def _skips(self, scope: Scope) -> bool:
        path = scope.get("path", "")
        skipped = any(path == p or path.startswith(p + "/") for p in self.skip_prefixes)
        return scope["type"] != "http" or scope["method"] == "HEAD" or skipped

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._skips(scope):
            await self.app(scope, receive, send)
            return

        def readable(start: Message, body: bytes) -> bytes:
            headers = Headers(raw=start["headers"])
            content_type, allow = headers.get("content-type", ""), headers.get("allow", "")
            error = readable_error(start["status"], body, content_type, scope["method"], scope["path"], allow)
            return json.dumps(error).encode()

        await self.app(scope, receive, rewriting(send, lambda status: status >= 400, readable))


class UploadLimit:
    """Answer 413 with a JSON error when a request body to one of `paths` exceeds `max_bytes`: a
    too-large Content-Length before any of the body is read, a chunked body once over the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int, paths: tuple[str, ...] = ("/classify",)):
        self.app, self.max_bytes, self.paths = app, max_bytes, paths

    def _refusal(self) -> JSONResponse:
        limit_mb = self.max_bytes / 2**20
        return JSONResponse({"error": f"upload too large: the limit is {limit_mb:g} MB"}, status_code=413)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.isdigit():
                refused = JSONResponse({"error": "invalid Content-Length header"}, status_code=400)
            else:
                refused = self._refusal() if int(length) > self.max_bytes else None
            await (refused or self.app)(scope, receive, send)
            return
        received, refused = 0, False

        async def counting_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            received += len(message.get("body", b"")) if message["type"] == "http.request" else 0
            if received > self.max_bytes:
                refused = True
                await self._refusal()(scope, receive, send)
                return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:  # once refused, the app's own (error) response is dropped
                await send(message)

        await self.app(scope, counting_receive, guarded_send)


LOG = logging.getLogger("bentoml.service.ser")
BENTOML_ERRORS = "bentoml._internal.server.http_app"
REFUSAL = "%s %s: %d %s"  # method, path, status, the error answered


def log_refusal(request: Request, status: int, message: str) -> None:
    """One warning line for a request answered with `status` and `message`."""
    LOG.warning(REFUSAL, request.method, request.url.path, status, message)


def _refusal(exc: BaseException | None) -> tuple[int, str] | None:
    """(status, message) of an exception that refuses a request, None for any other."""
    if isinstance(exc, ValidationError):
        return 400, problems_message(exc.errors(include_context=False, include_input=False))
    if isinstance(exc, ServiceUnavailable) or (
        isinstance(exc, BentoMLException) and exc.error_code.value < 500
    ):
        return exc.error_code.value, str(exc)
    return None


class RefusalsAsWarnings(logging.Filter):
    """Turns BentoML's `Exception on <path> [<method>]` record of a refusal into one warning line."""

    def filter(self, record: logging.LogRecord) -> bool:
        refusal = _refusal(record.exc_info[1] if record.exc_info else None)
        if refusal is not None and isinstance(record.args, tuple) and len(record.args) == 2:
            path, method = record.args
            record.msg, record.args = REFUSAL, (method, path, *refusal)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
        return True


def log_refusals_as_warnings() -> None:
    """Install the filter (once per process)."""
    logger = logging.getLogger(BENTOML_ERRORS)
    if not any(isinstance(f, RefusalsAsWarnings) for f in logger.filters):
        logger.addFilter(RefusalsAsWarnings())


class Route:
    """ASGI middleware: `path` itself (HTTP or WebSocket) goes to `endpoint`, the rest to the app."""

    def __init__(self, app: ASGIApp, endpoint: ASGIApp, path: str):
        self.app, self.endpoint, self.path = app, endpoint, path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = self.endpoint if scope["type"] != "lifespan" and scope["path"] == self.path else self.app
        await target(scope, receive, send)


class GetAsPost:
    """ASGI middleware: `GET path` (for each of `paths`) goes to the app as `POST path`, and a 405
    for those paths says that both are allowed."""

    def __init__(self, app: ASGIApp, paths: tuple[str, ...]):
        self.app, self.paths = app, paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return

        async def allowing_get(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                headers = [(k, v) for k, v in message["headers"] if k.lower() != b"allow"]
                message = {**message, "headers": [*headers, (b"allow", b"GET, POST")]}
            await send(message)

        method = "POST" if scope["method"] == "GET" else scope["method"]
        await self.app({**scope, "method": method}, receive, allowing_get)


class RewrittenJSON:
    """ASGI middleware: the JSON answer to `GET path` goes out as `rewrite(answer)`."""

    def __init__(self, app: ASGIApp, path: str, rewrite: Callable[[Any], Any]):
        self.app, self.path, self.rewrite = app, path, rewrite

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == self.path:
            send = rewriting(send, lambda status: status == 200, self._rewritten)
        await self.app(scope, receive, send)

    def _rewritten(self, start: Message, body: bytes) -> bytes:
        return json.dumps(self.rewrite(json.loads(body))).encode()


UNKNOWN_PATH = "/<unknown>"


def route_label(scope: Scope, extra: tuple[str, ...] = ()) -> str:
    """The path a request's metrics are labelled with: the path of the app's route it matches (a
    mount's prefix for everything under it), one of `extra` (paths a middleware serves), or
    UNKNOWN_PATH."""
    app = scope.get("app")  # the Starlette app, set before its middleware runs
    if scope["path"] in extra:
        return scope["path"]
    for route in app.router.routes if app is not None else ():
        if route.matches(scope)[0] is not Match.NONE:
            return getattr(route, "path", UNKNOWN_PATH)
    return UNKNOWN_PATH


def bound_metric_paths(extra: tuple[str, ...] = ()) -> None:
    """BentoML's metrics middleware sees each request under its `route_label`, the app still gets
    the request as sent (once per process)."""
    from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware as Metrics

    counted = Metrics.__call__
    if getattr(counted, "bounded", False):
        return

    async def labelled(self: Metrics, scope: Scope, receive: Receive, send: Send) -> None:
        label = route_label(scope, extra) if scope["type"] in ("http", "websocket") else None
        if label in (None, scope.get("path")):
            await counted(self, scope, receive, send)
            return
        if not self._is_setup:
            self._setup()
        relabelled, app = copy.copy(self), self.app
        relabelled.app = lambda _, receive, send: app(scope, receive, send)
        await counted(relabelled, {**scope, "path": label}, receive, send)

    labelled.bounded = True
    Metrics.__call__ = labelled


class DemoApp(Starlette):
    """An ASGI app built later (`build`, from the service's __init__, so in the worker only:
    `bentoml serve`'s supervisor imports the service module too, and Gradio alone takes 140 MB).
    BentoML routes to a mounted Starlette app by its routes, and runs a mounted app's lifespan only
    for Starlette apps, after it has created the service: hence the routes and lifespan forwarded."""

    def __init__(self) -> None:
        super().__init__(lifespan=lambda _: self.app.router.lifespan_context(self.app))
        self.app: Starlette | None = None

    def build(self, app: Starlette) -> None:
        self.app = app

    @property
    def routes(self) -> list:
        return self.app.routes if self.app else []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await (super().__call__ if scope["type"] == "lifespan" else self.app)(scope, receive, send)
