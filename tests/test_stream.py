"""The streaming endpoint, `/stream`, with a real WebSocket client against the session's server:
updates as REST answers them, a summary, and every bound and malformed message closed with its
reason while the server keeps serving."""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
import soundfile as sf
from conftest import REPO_ROOT, SERVICE_ENV
from helpers import LABELS, post_array, tone
from httpx_ws import WebSocketDisconnect, connect_ws
from wsproto.utilities import LocalProtocolError

from service.stream import StreamClosed, StreamFormat

MAX_OPEN = int(SERVICE_ENV["SER_STREAM_MAX_OPEN"])
IDLE_S = float(SERVICE_ENV["SER_STREAM_IDLE_S"])
MAX_SECONDS = float(SERVICE_ENV["SER_STREAM_MAX_SECONDS"])
MAX_MESSAGE = int(SERVICE_ENV["SER_STREAM_MAX_MESSAGE_KB"]) * 1024


def ws_url(server: str) -> str:
    return server.replace("http://", "ws://") + "/stream"


def start(ws, **fields) -> dict:
    ws.send_text(json.dumps({"sampling_rate": 16_000, "format": "float32", **fields}))
    return ws.receive_json(timeout=30)


def closing(ws) -> tuple[list[dict], int, str]:
    """Every message until the server closes: (messages, close code, reason)."""
    messages = []
    while True:
        try:
            messages.append(ws.receive_json(timeout=60))
        except WebSocketDisconnect as closed:
            return messages, closed.code, closed.reason


def opens(server: str) -> bool:
    """Whether a new stream is admitted (a refused one is closed at once)."""
    with connect_ws(ws_url(server)) as ws:
        try:
            return start(ws)["type"] == "ready"
        except (WebSocketDisconnect, LocalProtocolError):
            return False


def assert_serving(server: str) -> None:
    """The server still answers REST, and a new stream opens."""
    assert post_array(server, tone(0.5).tolist()).status_code == 200
    assert opens(server)


def test_updates_are_the_rest_answer_for_the_last_seconds_and_the_end_gets_a_summary(server):
    wave = tone(4.0, f0=150) * np.linspace(0.2, 1.0, 4 * 16_000, dtype=np.float32)
    with connect_ws(ws_url(server)) as ws:
        ready = start(ws)
        assert ready == {"type": "ready", "labels": LABELS, "window_s": 3.0, "update_s": 0.5}
        for at in range(0, len(wave), 4000):  # quarter-second chunks
            ws.send_bytes(wave[at : at + 4000].astype("<f4").tobytes())
        ws.send_text(json.dumps({"type": "end"}))
        messages, code, reason = closing(ws)
    assert (code, reason) == (1000, "end of stream")
    *updates, summary = messages
    assert [u["end"] for u in updates] == [0.5 * k for k in range(1, 9)]
    for update in updates:
        assert update["type"] == "update" and update["start"] == max(0.0, update["end"] - 3.0)
        assert math.isclose(sum(update["scores"].values()), 1, abs_tol=1e-5)
        assert update["label"] == max(update["scores"], key=update["scores"].get)
    last = updates[-1]
    rest = post_array(server, wave[16_000:].tolist()).json()  # its 3 s
    assert last["scores"] == pytest.approx(rest["scores"], abs=1e-4)
    assert summary["type"] == "summary" and summary["updates"] == 8 and summary["duration_s"] == 4.0
    assert set(summary["scores"]) == set(LABELS)


def test_pcm16_stereo_at_another_rate(server):
    wave = (tone(1.5, sr=44_100, channels=2) * 32767).astype("<i2")
    with connect_ws(ws_url(server)) as ws:
        start(ws, sampling_rate=44_100, format="pcm16", channels=2)
        for at in range(0, len(wave), 11_025):
            ws.send_bytes(wave[at : at + 11_025].tobytes())
        ws.send_text('{"type": "end"}')
        messages, code, _ = closing(ws)
    # an update after the chunk that passes each half second (resampling holds back a few ms)
    ends = [m["end"] for m in messages[:-1]]
    assert code == 1000 and len(ends) == 2 and 0.5 <= ends[0] < 1.0 <= ends[1] < 1.5, ends
    assert messages[-1]["duration_s"] == 1.5 and messages[-1]["updates"] == 2


@pytest.mark.parametrize(
    "opening, then, reason",
    [
        (b"\x00\x01", None, "the first message must be JSON text"),
        ("hello", None, "the first message must be JSON text"),
        ('{"sampling_rate": 16000, "format": "mp3"}', None, "format must be pcm16 or float32"),
        ('{"sampling_rate": 16000.5}', None, "sampling_rate must be a whole number of Hz"),
        ('{"sampling_rate": 16000, "format": "pcm16"}', b"\x00\x01\x02", "3 bytes is not a whole number"),
        (
            '{"sampling_rate": 16000, "format": "float32"}',
            np.full(9, np.nan, "<f4").tobytes(),
            "float32 samples must be finite",
        ),
        ('{"sampling_rate": 16000}', "more audio please", "audio goes in binary messages"),
    ],
    ids=["binary-first", "not-json", "format", "rate", "partial-frame", "nan", "text-audio"],
)
def test_garbage_is_closed_with_1007_and_the_reason(server, opening, then, reason):
    with connect_ws(ws_url(server)) as ws:
        for message in (opening, then):
            if message is not None:
                (ws.send_bytes if isinstance(message, bytes) else ws.send_text)(message)
        messages, code, said = closing(ws)
    assert code == 1007 and said.startswith(reason)
    assert messages[-1] == {"type": "error", "error": said}
    assert_serving(server)


def test_bounds_each_close_with_its_reason(server):
    with connect_ws(ws_url(server)) as ws:  # one message over the size limit
        start(ws)
        ws.send_bytes(b"\x00" * (MAX_MESSAGE + 4))
        _, code, reason = closing(ws)
    assert code == 1009 and reason == f"a message of {MAX_MESSAGE + 4} bytes; the limit is {MAX_MESSAGE}"

    with connect_ws(ws_url(server)) as ws:  # silence from the client
        start(ws)
        _, code, reason = closing(ws)
    assert code == 1008 and reason == f"no message for {IDLE_S:g} s (SER_STREAM_IDLE_S)"

    chunk = np.zeros(MAX_MESSAGE // 4, "<f4").tobytes()  # 1 s of float32 at 16 kHz
    with connect_ws(ws_url(server)) as ws:  # longer than a stream may be
        start(ws)
        try:
            for _ in range(int(MAX_SECONDS / (len(chunk) / 4 / 16_000)) + 2):
                ws.send_bytes(chunk)
        except WebSocketDisconnect:
            pass
        messages, code, reason = closing(ws)
    assert code == 1008 and reason.startswith(f"the stream passed {MAX_SECONDS:g} s of audio")
    assert [m["type"] for m in messages[-2:]] == ["summary", "error"]
    assert_serving(server)


def test_streams_beyond_the_limit_wait_and_a_client_that_vanishes_frees_its_place(server):
    with httpx.Client() as client:
        sessions = [connect_ws(ws_url(server), client) for _ in range(MAX_OPEN)]
        opened = [s.__enter__() for s in sessions]
        for ws in opened:
            assert start(ws)["type"] == "ready"
            ws.send_bytes(tone(0.3).astype("<f4").tobytes())  # mid-stream
        with connect_ws(ws_url(server)) as extra:
            _, code, reason = closing(extra)
        assert code == 1013 and reason.startswith(f"{MAX_OPEN} streams are open")
        for ws in opened:  # gone without an end message or a close frame
            ws.stream.close()
    for _ in range(50):  # the server notices the dropped connections
        if opens(server):
            break
        time.sleep(0.1)
    else:
        pytest.fail("the places of vanished clients were never freed")
    with httpx.Client() as client:  # all of them
        with contextlib.ExitStack() as stack:
            for _ in range(MAX_OPEN):
                assert start(stack.enter_context(connect_ws(ws_url(server), client)))["type"] == "ready"


def test_plain_http_on_the_stream_path_is_told_to_use_a_websocket(server):
    response = httpx.get(server + "/stream")
    assert response.status_code == 426 and "WebSocket" in response.json()["error"]


@pytest.mark.fast
def test_the_opening_message_and_chunks_are_checked():
    assert StreamFormat.parse('{"sampling_rate": 8000}') == StreamFormat(8000, "pcm16", 1)
    stereo = StreamFormat.parse('{"sampling_rate": 48000, "format": "pcm16", "channels": 2}')
    decoded = stereo.decode(np.array([[32767, -32768], [16384, 16384]], "<i2").tobytes())
    np.testing.assert_allclose(decoded, [-0.5 / 32768, 0.5], atol=1e-6)
    for text in ('{"sampling_rate": true}', '{"sampling_rate": 500}', '{"rate": 16000}', "[]"):
        with pytest.raises(StreamClosed) as refused:
            StreamFormat.parse(text)
        assert refused.value.code == 1007
    with pytest.raises(StreamClosed, match="within ±1000"):
        StreamFormat(16000, "float32").decode(np.array([1e9], "<f4").tobytes())


def test_the_example_client_streams_a_file(server):
    from demo.app import example_clips

    story = example_clips()[-1]
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "stream_file.py"), story, "--url", ws_url(server)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    ready, *updates, summary = map(json.loads, done.stdout.splitlines())
    assert ready["type"] == "ready" and summary["type"] == "summary"
    assert summary["duration_s"] == pytest.approx(sf.info(story).duration, abs=1e-3)
    assert len(updates) == summary["updates"] >= int(summary["duration_s"] / 0.5) - 1


@pytest.mark.fast
def test_a_live_session_answers_every_half_second_of_audio_and_says_when_it_hears_speech():
    from pipeline.data.synth import make_speakers, synthesize_utterance
    from pipeline.inference.live import LiveSession

    heard = []

    def model(waves):
        heard.extend(len(w) for w in waves)
        return np.tile([0.1, 0.2, 0.3, 0.4], (len(waves), 1))

    speech = synthesize_utterance(make_speakers(1, 0)[0], "angry", np.random.default_rng(0))
    wave = np.concatenate([np.zeros(48_000 * 4, np.float32), np.repeat(speech, 3)])  # 4 s silence, 48 kHz
    session = LiveSession(48_000, model, LABELS)
    updates = [u for at in range(0, len(wave), 4800) for u in session.feed(wave[at : at + 4800])]
    ends = [u["end"] for u in updates]
    assert all(0.5 * k <= end <= 0.5 * k + 0.1 for k, end in enumerate(ends, start=1))  # after the chunk
    assert max(heard) == 3 * 16_000 and all(u["end"] - u["start"] <= 3.0 for u in updates)
    assert not any(u["speech"] for u in updates if u["end"] <= 3.5)  # silence
    assert all(u["speech"] for u in updates if u["end"] >= 5.0)  # the utterance from 4 s on
    assert updates[0]["label"] == "sad" and updates[0]["scores"] == pytest.approx(
        dict(zip(LABELS, [0.1, 0.2, 0.3, 0.4]))
    )
    summary = session.summary()
    assert summary["updates"] == len(updates) and summary["duration_s"] == pytest.approx(
        len(wave) / 48_000, abs=1e-3
    )

    late = LiveSession(16_000, model, LABELS)  # a client that sends 5 s at once gets one answer
    assert len(late.feed(np.zeros(5 * 16_000, np.float32))) == 1
    short = LiveSession(16_000, model, LABELS)  # a stream shorter than a step still gets its answer
    assert short.feed(np.zeros(4000, np.float32)) == [] and short.summary()["updates"] == 1
    assert LiveSession(16_000, model, LABELS).summary() == {
        "type": "summary",
        "duration_s": 0.0,
        "updates": 0,
    }
