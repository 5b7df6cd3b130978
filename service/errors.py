"""ASGI middleware: every error answer of the API is a JSON object `{"error": "<what is wrong>"}`.

BentoML 1.4 (>=1.4.30,<1.5, checked up to 1.4.40) and Starlette answer some errors in other shapes:
plain text for an unknown path (404) or method (405), `[{"error": ...}]` for an unsupported media
type (415), and for a request body that fails validation an `error` that only counts the problems
("1 validation error for X"), with the problems themselves in `detail`. This middleware rewrites
those bodies; `detail` is kept.
"""

from __future__ import annotations

import json
import re
from http import HTTPStatus
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.errors import InputError, LimitError, OptionError


def status_of(err: InputError) -> int:
    """The HTTP status of a refused input: 422 for readable audio outside the limits or options no
    clip could satisfy, 400 for audio that cannot be read."""
    return 422 if isinstance(err, (LimitError, OptionError)) else 400


VALIDATION_SUMMARY = re.compile(r"\d+ validation errors? for ")
SHOWN_PROBLEMS = 5


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
            text = f"{text}: {path} (the API: POST /classify, POST /classify_array, POST /info; docs at /)"
        elif status == 405 and allow:
            text = f"{text}: {method} {path} (allowed: {allow})"
        return {"error": text}
    try:
        data = json.loads(body)
    except ValueError:
        return {"error": phrase}
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
        data = data[0]  # BentoML answers a 4xx BentoMLException as a one-element list
    if not isinstance(data, dict) or not isinstance(data.get("error"), str) or not data["error"]:
        return {"error": phrase, "detail": data}
    problems = data.get("detail")
    if VALIDATION_SUMMARY.match(data["error"]) and isinstance(problems, list) and problems:
        return {**data, "error": problems_message(problems)}
    return data


class JSONErrors:
    """Rewrite error answers (status >= 400) of the paths outside `skip_prefixes` (the Gradio demo
    keeps its own) into `{"error": "..."}`; other answers pass through untouched."""

    def __init__(self, app: ASGIApp, skip_prefixes: tuple[str, ...] = ("/ui",)):
        self.app = app
        self.skip_prefixes = skip_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] == "HEAD"  # no body to rewrite
            or any(scope["path"] == p or scope["path"].startswith(p + "/") for p in self.skip_prefixes)
        ):
            await self.app(scope, receive, send)
            return

        start: Message | None = None
        chunks: list[bytes] = []

        async def rewriting_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                start = message  # held back until the whole body is known
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            headers = Headers(raw=start["headers"])
            body = json.dumps(
                readable_error(
                    start["status"],
                    b"".join(chunks),
                    headers.get("content-type", ""),
                    scope["method"],
                    scope["path"],
                    headers.get("allow", ""),
                )
            ).encode()
            kept = [
                (k, v) for k, v in start["headers"] if k.lower() not in (b"content-type", b"content-length")
            ]
            raw = [
                *kept,
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]
            await send({**start, "headers": raw})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, receive, rewriting_send)
