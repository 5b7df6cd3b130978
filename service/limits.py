"""ASGI middleware that bounds request bodies (BentoML 1.4 has no request-size limit of its own; checked
for 1.4.30–1.4.40, the range pyproject.toml allows is >=1.4.30,<1.5)."""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class UploadLimit:
    """Answer 413 with a JSON error when a request body to one of `paths` exceeds `max_bytes`.

    A too-large Content-Length is refused before any of the body is read; a chunked body is
    counted as it arrives and cut off once over the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, paths: tuple[str, ...] = ("/classify",)):
        self.app = app
        self.max_bytes = max_bytes
        self.paths = paths

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
                await JSONResponse({"error": "invalid Content-Length header"}, status_code=400)(
                    scope, receive, send
                )
            elif int(length) > self.max_bytes:
                await self._refusal()(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return

        received = 0
        refused = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    await self._refusal()(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:  # once refused, the app's own (error) response is dropped
                await send(message)

        await self.app(scope, counting_receive, guarded_send)
