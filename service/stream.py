"""`/stream`: live speech over a WebSocket, beside the REST API on the same port.

The client opens the stream with one JSON text message, `{"sampling_rate": 16000, "format":
"pcm16"}` (format pcm16 or float32, little-endian; optional "channels", interleaved), then sends
audio as binary messages. Every half second of audio the server answers `{"type": "update",
"start", "end", "speech", "label", "score", "scores"}` for the last 3 s; the text message
`{"type": "end"}` gets `{"type": "summary", ...}` and a normal close. Anything malformed or past a
bound (SER_STREAM_*) gets `{"type": "error", "error": ...}` and a close with the reason: 1007 bad
data, 1008 too long or idle, 1009 message too big, 1013 too many streams or a busy model.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

import bentoml
import numpy as np
from bentoml.exceptions import ServiceUnavailable
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from pipeline.data.audio import MAX_CHANNELS, MAX_SAMPLING_RATE, MIN_SAMPLING_RATE, to_mono
from pipeline.inference.live import LiveConfig, LiveSession
from service.settings import Settings

logger = logging.getLogger("ser.stream")
OPEN_STREAMS = bentoml.metrics.Gauge(
    name="ser_open_streams", documentation="streams open on /stream", multiprocess_mode="livesum"
)
FORMATS = {"pcm16": np.dtype("<i2"), "float32": np.dtype("<f4")}
START = '{"sampling_rate": 16000, "format": "pcm16" or "float32"}'
BAD_DATA, POLICY, TOO_BIG, TRY_LATER = 1007, 1008, 1009, 1013


class StreamClosed(Exception):
    """End the stream with `code` and `reason` (sent first as an error message)."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


@dataclass(frozen=True)
class StreamFormat:
    sampling_rate: int
    format: str = "pcm16"
    channels: int = 1

    @classmethod
    def parse(cls, text: str | None) -> StreamFormat:
        """The opening message, checked; StreamClosed(1007) says what is wrong with it."""
        try:
            fields = json.loads(text) if text is not None else None
        except ValueError:
            fields = None
        if not isinstance(fields, dict) or set(fields) - {"sampling_rate", "format", "channels"}:
            raise StreamClosed(BAD_DATA, f"the first message must be JSON text: {START}")
        rate, kind, channels = (
            fields.get("sampling_rate"),
            fields.get("format", "pcm16"),
            fields.get("channels", 1),
        )
        if type(rate) is not int or not MIN_SAMPLING_RATE <= rate <= MAX_SAMPLING_RATE:
            limits = f"{MIN_SAMPLING_RATE}-{MAX_SAMPLING_RATE}"
            raise StreamClosed(BAD_DATA, f"sampling_rate must be a whole number of Hz in {limits}")
        if kind not in FORMATS:
            raise StreamClosed(BAD_DATA, "format must be pcm16 or float32")
        if type(channels) is not int or not 1 <= channels <= MAX_CHANNELS:
            raise StreamClosed(BAD_DATA, f"channels must be 1 to {MAX_CHANNELS}")
        return cls(rate, kind, channels)

    def decode(self, data: bytes) -> np.ndarray:
        """A binary message as mono float32; StreamClosed(1007) for a partial frame or bad samples."""
        dtype = FORMATS[self.format]
        if len(data) % (dtype.itemsize * self.channels):
            raise StreamClosed(BAD_DATA, f"{len(data)} bytes is not a whole number of {self.format} frames")
        samples = to_mono(np.frombuffer(data, dtype).reshape(-1, self.channels))
        if dtype.kind == "i":
            return samples / 32768.0
        peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
        if not math.isfinite(peak) or peak > 1e3:
            raise StreamClosed(BAD_DATA, "float32 samples must be finite and within ±1000 (full scale is ±1)")
        return samples


def _is_end(text: str) -> bool:
    try:
        return json.loads(text) == {"type": "end"}
    except ValueError:
        return False


class StreamEndpoint:
    """The ASGI app of `/stream`: one `LiveSession` per WebSocket, on the shared model."""

    def __init__(self, model: Callable[[], Callable], labels: list[str], settings: Settings):
        self.model, self.labels, self.settings = model, labels, settings
        self.open = 0
        self.lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":  # plain HTTP: say how to use it
            body = json.dumps({"error": "/stream is a WebSocket endpoint: connect with ws://"}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 426, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        socket = WebSocket(scope, receive, send)
        await socket.accept()
        with self.lock:
            admitted = self.open < self.settings.stream_max_open
            self.open += admitted
            OPEN_STREAMS.set(self.open)
        if not admitted:
            busy = f"{self.settings.stream_max_open} streams are open, the limit; try again later"
            await self._close(socket, StreamClosed(TRY_LATER, busy))
            return
        try:
            await self._serve(socket)
        except StreamClosed as closed:
            await self._close(socket, closed)
        except WebSocketDisconnect:
            pass  # the client went away: nothing to answer
        finally:
            with self.lock:
                self.open -= 1
                OPEN_STREAMS.set(self.open)

    async def _receive(self, socket: WebSocket) -> dict:
        try:
            message = await asyncio.wait_for(socket.receive(), self.settings.stream_idle_s)
        except TimeoutError:
            raise StreamClosed(
                POLICY, f"no message for {self.settings.stream_idle_s:g} s (SER_STREAM_IDLE_S)"
            ) from None
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        size = len(message.get("bytes") or message.get("text") or "")
        if size > self.settings.stream_max_message_bytes:
            limit = self.settings.stream_max_message_bytes
            raise StreamClosed(TOO_BIG, f"a message of {size} bytes; the limit is {limit}")
        return message

    async def _serve(self, socket: WebSocket) -> None:
        stream = StreamFormat.parse((await self._receive(socket)).get("text"))
        config = LiveConfig()
        session = LiveSession(stream.sampling_rate, self.model(), self.labels, config)
        ready = {
            "type": "ready",
            "labels": self.labels,
            "window_s": config.window_s,
            "update_s": config.update_s,
        }
        await socket.send_json(ready)
        heard = 0.0
        while True:
            message = await self._receive(socket)
            if message.get("text") is not None:
                if not _is_end(message["text"]):
                    raise StreamClosed(
                        BAD_DATA, 'audio goes in binary messages; end the stream with {"type": "end"}'
                    )
                await socket.send_json(await run_in_threadpool(session.summary))
                await socket.close(1000, "end of stream")
                return
            chunk = stream.decode(message.get("bytes") or b"")
            heard += len(chunk) / stream.sampling_rate
            if heard > self.settings.stream_max_seconds:
                await socket.send_json(await run_in_threadpool(session.summary))
                limit = f"{self.settings.stream_max_seconds:g} s of audio (SER_STREAM_MAX_SECONDS)"
                raise StreamClosed(POLICY, f"the stream passed {limit}")
            try:
                updates = await run_in_threadpool(session.feed, chunk)
            except ServiceUnavailable:
                raise StreamClosed(TRY_LATER, "the model is busy; try again later") from None
            for update in updates:
                await socket.send_json(update)

    @staticmethod
    async def _close(socket: WebSocket, closed: StreamClosed) -> None:
        logger.warning("stream closed (%d): %s", closed.code, closed.reason)
        try:
            await socket.send_json({"type": "error", "error": closed.reason})
            await socket.close(closed.code, closed.reason[:120])  # a close reason holds 123 bytes
        except (WebSocketDisconnect, RuntimeError):
            pass  # the client is gone already


class Route:
    """ASGI middleware: `path` itself (no trailing slash, HTTP or WebSocket) goes to `endpoint`,
    everything else to the app (a mounted app would answer only `path/`)."""

    def __init__(self, app, endpoint, path: str):
        self.app, self.endpoint, self.path = app, endpoint, path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = self.endpoint if scope["type"] != "lifespan" and scope["path"] == self.path else self.app
        await target(scope, receive, send)
