"""Bad input against the real server: every malformed request is answered 4xx with a JSON body
`{"error": "<message>"}` (never 5xx, never plain text), oversized and overlong uploads are refused
before they are read or decoded, and the server serves good requests afterwards.

One table: each row is a request and the status it must get (and, where it matters, a fragment
of the message). WAV files whose headers lie are built by hand with `struct`.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import time
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from conftest import SERVICE_ENV
from helpers import LABELS, assert_error, post_array, post_audio, tone, wav_bytes

from pipeline.data.audio import MAX_RESAMPLING_KERNEL, resampling_kernel_size, resampling_ratio

MAX_SECONDS = float(SERVICE_ENV["SER_MAX_SECONDS"])
MAX_UPLOAD_BYTES = int(float(SERVICE_ENV["SER_MAX_UPLOAD_MB"]) * 2**20)
FORM_FIELDS = "the fields are audio, top_k, window_s, hop_s"
JSON_FIELDS = "the fields are samples, sampling_rate, top_k, window_s, hop_s"


def riff(
    data: bytes,
    rate: int = 16_000,
    channels: int = 1,
    bits: int = 16,
    fmt_tag: int = 1,  # 1: integer PCM, 3: IEEE float
    data_size: int | None = None,
    riff_size: int | None = None,
) -> bytes:
    """A WAV file built by hand; its header tells the truth unless `data_size` or `riff_size` say
    otherwise."""
    block_align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block_align % 2**32, block_align, bits)
    size = len(data) if data_size is None else data_size
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size) + data
    return b"RIFF" + struct.pack("<I", 4 + len(chunks) if riff_size is None else riff_size) + b"WAVE" + chunks


PCM = (tone(1.0) * 32767).astype("<i2").tobytes()  # 1 s of 16-bit mono at 16 kHz
TEN_HOURS = 10 * 3600 * 16_000 * 2


def floats(*values: float) -> bytes:
    return np.array([*values, *tone(0.5)], dtype="<f4").tobytes()


def upload(content: bytes, filename: str = "clip.wav", **form) -> dict:
    return {"files": {"audio": (filename, content, "application/octet-stream")}, "data": form}


def array(body) -> dict:
    return {"path": "/classify_array", "json": body}


def raw(content: bytes | str, content_type: str | None, path: str = "/classify") -> dict:
    return {
        "path": path,
        "content": content,
        "headers": {"Content-Type": content_type} if content_type else {},
    }


def multipart(body: bytes, boundary: str = "b0undary") -> dict:
    return raw(body, f"multipart/form-data; boundary={boundary}")


def part(name: str, value: bytes, filename: str | None = None, boundary: str = "b0undary") -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"


def bad(id: str, status: int, request: dict, fragment: str = "") -> pytest.param:
    return pytest.param(request, status, fragment, id=id)


SAMPLES = [0.1] * 1600
OVERSIZED = b"RIFF" + bytes(MAX_UPLOAD_BYTES + 1024)

CASES = [
    # Uploads that are not audio, or broken audio.
    bad("text-renamed-wav", 400, upload(b"these are meeting notes, not audio\n" * 20), "upload: "),
    bad("empty-file", 400, upload(b""), "upload: "),
    bad("truncated-header", 400, upload(wav_bytes()[:40]), "upload: "),
    bad("corrupt-wav", 400, upload(b"RIFF" + bytes(range(256)) * 8), "upload: "),
    bad("header-only", 400, upload(wav_bytes()[:44]), "truncated"),
    bad("random-bytes-as-mp3", 400, upload(np.random.default_rng(0).bytes(5000), "x.mp3")),
    # WAV headers that lie about their length.
    bad("data-claims-more-than-present", 400, upload(riff(PCM, data_size=2 * len(PCM))), "truncated"),
    bad("data-claims-fewer-than-present", 400, upload(riff(PCM, data_size=len(PCM) // 2)), "not a chunk"),
    bad("riff-size-too-big", 400, upload(riff(PCM, riff_size=len(PCM) + 1000)), "header announces"),
    bad("riff-size-too-small", 400, upload(riff(PCM, riff_size=len(PCM) // 2)), "header announces"),
    bad(
        "header-claims-ten-hours",
        422,
        upload(riff(PCM, data_size=TEN_HOURS, riff_size=36 + TEN_HOURS)),
        "limit",
    ),
    bad("zero-length-audio", 400, upload(riff(b"")), "no samples"),
    bad("half-a-sample", 400, upload(riff(b"\x01"))),
    bad("fmt-block-align-zero", 400, upload(riff(PCM, bits=0))),
    # Impossible contents: NaN and infinity, rates and channel counts out of range.
    bad("nan-in-float-wav", 400, upload(riff(floats(np.nan), fmt_tag=3, bits=32)), "NaN"),
    bad("inf-in-float-wav", 400, upload(riff(floats(np.inf, -np.inf), fmt_tag=3, bits=32)), "infinite"),
    bad("wav-at-4-GHz", 422, upload(riff(PCM, rate=4_000_000_000)), "sampling rate"),
    bad("wav-at-500-Hz", 422, upload(riff(PCM[:16000], rate=500)), "sampling rate"),
    bad("wav-with-4096-channels", 422, upload(riff(bytes(4096 * 2 * 16), channels=4096)), "channels"),
    # Not a multipart upload, or a broken one.
    bad("json-to-classify", 400, {"json": {"audio": "clip.wav"}}, "multipart/form-data"),
    bad("text-to-classify", 400, raw("hello", "text/plain"), "multipart/form-data"),
    bad("no-body", 400, {}, "multipart/form-data"),
    bad("url-in-audio-field", 400, {"data": {"audio": "http://127.0.0.1/clip.wav"}}),
    bad(
        "multipart-without-boundary", 400, raw(part("audio", PCM, "a.wav"), "multipart/form-data"), "boundary"
    ),
    bad("multipart-cut-short", 400, multipart(part("audio", riff(PCM), "a.wav")[:3000])),
    bad(
        "multipart-part-without-name",
        400,
        multipart(b"--b0undary\r\nContent-Disposition: form-data\r\n\r\nx\r\n"),
    ),
    bad("text-audio-field", 400, multipart(part("audio", b"clip.wav") + b"--b0undary--\r\n"), "a file"),
    bad("audio-without-filename", 400, {"files": {"audio": ("", wav_bytes())}}, "a file"),
    bad("audio-in-another-field", 400, {"files": {"file": ("clip.wav", wav_bytes())}}, FORM_FIELDS),
    bad("empty-multipart", 400, raw("", "multipart/form-data; boundary=x")),
    bad("options-without-audio", 400, multipart(part("top_k", b"2") + b"--b0undary--\r\n"), "audio"),
    bad(
        "two-audio-files",
        400,
        {"files": [("audio", ("a.wav", wav_bytes())), ("audio", ("b.wav", wav_bytes()))]},
    ),
    bad("unknown-form-field", 400, upload(wav_bytes(), foo="1"), FORM_FIELDS),
    bad("query-parameter-on-classify", 400, {**upload(wav_bytes()), "params": {"foo": "1"}}, "query"),
    bad("pickle-media-type", 415, raw(b"\x80\x04N.", "application/vnd.bentoml+pickle")),
    # Options out of range or of the wrong type.
    bad("top_k-0", 422, upload(wav_bytes(), top_k=0), "top_k"),
    bad("top_k-9", 422, upload(wav_bytes(), top_k=9), "top_k"),
    bad("top_k-text", 400, upload(wav_bytes(), top_k="two"), "top_k"),
    bad("top_k-fraction", 400, upload(wav_bytes(), top_k=1.5), "top_k"),
    bad("window_s-short", 422, upload(wav_bytes(), window_s=0.1), "window_s"),
    bad("window_s-nan", 422, upload(wav_bytes(), window_s="nan"), "window_s"),
    bad("window_s-inf", 422, upload(wav_bytes(), window_s="inf"), "window_s"),
    bad("hop_s-without-window", 422, upload(wav_bytes(), hop_s=1), "hop_s"),
    bad("hop_s-tiny", 422, upload(wav_bytes(), window_s=1, hop_s=0.0001), "hop_s"),
    # Too long, too big.
    bad("clip-over-the-limit", 422, upload(wav_bytes(MAX_SECONDS + 2)), f"limit is {MAX_SECONDS:g} s"),
    bad("upload-over-the-limit", 413, upload(OVERSIZED), "limit"),
    bad("chunked-upload-over-the-limit", 413, {**upload(OVERSIZED), "chunked": True}, "limit"),
    bad(
        "array-over-the-limit",
        413,
        array({"samples": [0.0] * (MAX_UPLOAD_BYTES // 4), "sampling_rate": 16000}),
    ),
    # /classify_array: bodies that are not JSON, or not the right JSON.
    bad("not-json", 400, raw("nonsense", "application/json", "/classify_array")),
    bad("nan-literal", 400, raw('{"samples": [0.1, NaN], "sampling_rate": 16000}', None, "/classify_array")),
    bad(
        "infinity-literal",
        400,
        raw('{"samples": [Infinity], "sampling_rate": 16000}', None, "/classify_array"),
    ),
    bad("overflowing-number", 400, raw('{"samples": [1e999]}', "application/json", "/classify_array")),
    bad("json-array-body", 400, array([0.1, 0.2])),
    bad("json-null-body", 400, raw("null", "application/json", "/classify_array")),
    bad("deeply-nested", 400, raw("[" * 5000 + "]" * 5000, "application/json", "/classify_array")),
    bad("multipart-to-classify_array", 400, {"path": "/classify_array", **upload(wav_bytes())}, "JSON"),
    bad("empty-samples", 400, array({"samples": [], "sampling_rate": 16000}), "no samples"),
    bad("nan-as-string", 400, array({"samples": [0.1, "NaN"], "sampling_rate": 16000})),
    bad("ragged-frames", 400, array({"samples": [[0.1, 0.2], [0.3]], "sampling_rate": 16000})),
    bad("words-as-samples", 400, array({"samples": ["loud"], "sampling_rate": 16000})),
    bad("3-d-samples", 400, array({"samples": [[[0.1]]], "sampling_rate": 16000})),
    bad("samples-as-string", 400, array({"samples": "0.1, 0.2", "sampling_rate": 16000}), "samples"),
    bad("samples-as-object", 400, array({"samples": {"left": [0.1]}, "sampling_rate": 16000}), "samples"),
    bad("samples-as-number", 400, array({"samples": 0.1, "sampling_rate": 16000}), "samples"),
    bad("samples-as-bool", 400, array({"samples": True, "sampling_rate": 16000}), "samples"),
    bad("5000-channels", 422, array({"samples": [[0.1] * 5000] * 4, "sampling_rate": 16000}), "channels"),
    bad("no-sampling_rate", 400, array({"samples": SAMPLES}), "sampling_rate"),
    bad("no-samples", 400, array({"sampling_rate": 16000}), "samples"),
    bad("sampling_rate-5", 422, array({"samples": SAMPLES, "sampling_rate": 5}), "sampling rate"),
    bad("sampling_rate-1e12", 422, array({"samples": SAMPLES, "sampling_rate": 1e12}), "sampling rate"),
    bad("sampling_rate-text", 400, array({"samples": SAMPLES, "sampling_rate": "fast"}), "sampling_rate"),
    bad("sampling_rate-list", 400, array({"samples": SAMPLES, "sampling_rate": [16000]}), "sampling_rate"),
    bad("sampling_rate-bool", 400, array({"samples": SAMPLES, "sampling_rate": True}), "sampling_rate"),
    bad("sampling_rate-null", 400, array({"samples": SAMPLES, "sampling_rate": None}), "sampling_rate"),
    bad("6-ms", 422, array({"samples": [0.1] * 100, "sampling_rate": 16000}), "minimum"),
    bad("32-s", 422, array({"samples": [0.1] * 32000, "sampling_rate": 1000}), "limit"),
    bad(
        "json-top_k-fraction", 400, array({"samples": SAMPLES, "sampling_rate": 16000, "top_k": 1.5}), "top_k"
    ),
    bad("json-top_k-text", 400, array({"samples": SAMPLES, "sampling_rate": 16000, "top_k": "two"}), "top_k"),
    bad("json-top_k-bool", 400, array({"samples": SAMPLES, "sampling_rate": 16000, "top_k": True}), "top_k"),
    bad("json-window_s-text", 400, array({"samples": SAMPLES, "sampling_rate": 16000, "window_s": "2s"})),
    bad("unknown-json-field", 400, array({"samples": SAMPLES, "sampling_rate": 16000, "sr": 1}), JSON_FIELDS),
    bad(
        "query-parameter-on-array",
        400,
        {**array({"samples": SAMPLES, "sampling_rate": 16000}), "params": {"a": 1}},
    ),
    # /info, paths and methods.
    bad("query-parameter-on-info", 400, {"path": "/info", "params": {"verbose": "1"}}, "query"),
    bad("unknown-info-field", 400, {"path": "/info", "json": {"verbose": True}}, "no fields"),
    bad("info-not-json", 400, raw("please", "text/plain", "/info")),
    bad("get-classify", 405, {"method": "GET"}, "POST"),
    bad("put-classify_array", 405, {"method": "PUT", "path": "/classify_array"}, "POST"),
    bad("put-info", 405, {"method": "PUT", "path": "/info"}, "PUT /info (allowed: GET, POST)"),
    bad("delete-docs", 405, {"method": "DELETE", "path": "/docs.json"}),
    bad("unknown-path", 404, {"path": "/classify/now"}, "/classify/now"),
    bad("unknown-get-path", 404, {"method": "GET", "path": "/admin"}, "/admin"),
]


def send(url: str, request: dict) -> httpx.Response:
    request = dict(request)
    method, path = request.pop("method", "POST"), request.pop("path", "/classify")
    if request.pop("chunked", False):  # a generator body goes out chunked, without Content-Length
        encoded = httpx.Request("POST", url, files=request.pop("files"))
        body, request["headers"] = encoded.read(), {"Content-Type": encoded.headers["Content-Type"]}
        request["content"] = (body[i : i + 65536] for i in range(0, len(body), 65536))
    return httpx.request(method, f"{url}{path}", timeout=60, **request)


@pytest.mark.parametrize("request_, status, fragment", CASES)
def test_bad_request_gets_4xx_and_a_json_error(server, request_, status, fragment):
    message = assert_error(send(server, request_), status)
    assert fragment in message
    assert "bentoml-request" not in message and "/tmp" not in message  # no server paths in answers


def test_every_status_the_table_expects_is_declared_in_the_openapi_document(server):
    """Each status the table's requests to an operation of the API get is declared for it, with the
    JSON error body (404 and 405, for paths and methods outside the API, belong to no operation)."""
    document = httpx.get(f"{server}/docs.json", timeout=10).json()
    checked = set()
    for case in CASES:
        request_, status, _ = case.values
        path, method = request_.get("path", "/classify"), request_.get("method", "POST").lower()
        operation = document["paths"].get(path, {}).get(method)
        if operation is None:
            assert status in (404, 405), case.id
            continue
        declared = operation["responses"].get(str(status))
        assert declared, f"{case.id}: {status} is not declared for {method.upper()} {path}"
        assert declared["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
        checked.add(status)
    assert checked == {400, 413, 415, 422}


@pytest.mark.fast
def test_the_table_covers_at_least_30_kinds_of_bad_input():
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)


def test_a_header_claiming_ten_hours_is_judged_from_the_header(server):
    """3.9 MB of samples (2 minutes) under a header that announces 10 hours: refused from the
    header (the message says 10 hours), before any decoding."""
    body = PCM * int(3.9 * 2**20 / len(PCM))
    started = time.monotonic()
    response = post_audio(server, "long.wav", riff(body, data_size=TEN_HOURS, riff_size=36 + TEN_HOURS))
    assert "36000.0 s long" in assert_error(response, 422)
    assert time.monotonic() - started < 5


def test_a_body_over_the_limit_is_refused_before_it_is_read(server):
    """A request announcing 1 GB gets 413 while most of it is still unsent."""
    host, port = urlsplit(server).hostname, urlsplit(server).port
    with socket.create_connection((host, port), timeout=30) as conn:
        conn.sendall(
            b"POST /classify HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            b"Content-Length: 1000000000\r\n\r\n--x\r\n"
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = conn.recv(65536)
            assert chunk, f"connection closed without an answer: {answer!r}"
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert b"application/json" in head.lower()


@pytest.mark.parametrize("filename", ["a" * 300 + ".wav", "../../etc/passwd", "clip.wav\x00.mp3", "x"])
def test_any_file_name_is_fine(server, filename):
    """The name is the client's: a 300-character one failed BentoML's temporary copy (500)."""
    response = post_audio(server, filename, wav_bytes())
    assert response.status_code == 200, response.text


def test_an_enormous_window_is_one_window(server):
    """Finite but huge options are valid and clamped to the clip, not overflowed into a 500."""
    body = post_array(server, tone(1.0).tolist(), window_s=1e308, hop_s=1e300).json()
    assert [(s["start"], s["end"]) for s in body["segments"]] == [(0, 1.0)]


@pytest.mark.fast
@pytest.mark.parametrize("rate", [11_025, 22_050, 44_100, 48_000, 8_000, 1_000, 44_056, 44_101, 383_999])
def test_resampling_memory_is_bounded_for_any_rate(rate):
    """Common rates resample by their exact ratio; odd ones (44101 Hz reduces to 44101/16000, whose
    exact kernel takes 2.8 GB, 383999 Hz's 25 GB) by the nearest ratio with a small kernel."""
    orig, new = resampling_ratio(rate, 16_000)
    assert resampling_kernel_size(orig, new) <= MAX_RESAMPLING_KERNEL
    assert orig / new == pytest.approx(rate / 16_000, rel=1e-4)
    if rate in (11_025, 22_050, 44_100, 48_000, 8_000, 1_000):
        assert orig * 16_000 == new * rate


def test_odd_sampling_rates_are_served_fast(server):
    """Half a second at 44101 Hz took 34 s and gigabytes with the exact kernel."""
    samples = (tone(0.5, sr=44_101) * 32767).astype("<i2").tobytes()
    started = time.monotonic()
    response = post_audio(server, "odd.wav", riff(samples, rate=44_101))
    assert response.status_code == 200, response.text
    assert response.json()["duration_s"] == pytest.approx(0.5, abs=0.01)
    assert time.monotonic() - started < 5


LOG_RECORD = re.compile(r"\d{4}-\d\d-\d\dT")  # how each of BentoML's log records starts


def test_refusals_are_logged_as_one_warning_line_each(served):
    """BentoML logged a bad sampling_rate as an ERROR with pydantic's traceback (18 lines); now
    each refusal is one WARNING line: method, path, status and the error answered."""
    service, _ = served
    start = service.log.stat().st_size
    refusals = {
        "POST /classify_array: 400 sampling_rate: Input should be a valid integer": array(
            {"samples": SAMPLES, "sampling_rate": "fast"}
        ),
        "POST /classify: 400 upload: not a readable audio file": upload(b"meeting notes\n" * 20),
        "POST /classify_array: 422 audio is ": array({"samples": [0.1] * 100, "sampling_rate": 16000}),
        "POST /classify: 415 ": raw(b"\x80\x04N.", "application/vnd.bentoml+pickle"),
    }
    for request in refusals.values():
        assert 400 <= send(service.url, request).status_code < 500
    deadline = time.monotonic() + 10
    while True:  # the server's workers write their log as they go
        with open(service.log, "rb") as log:
            log.seek(start)
            logged = log.read().decode("utf-8", "replace")
        if all(line in logged for line in refusals) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert "Traceback" not in logged and "[ERROR]" not in logged, logged
    for line in refusals:
        assert sum(line in record for record in logged.splitlines() if "[WARNING]" in record) == 1, logged
    assert all(LOG_RECORD.match(record) for record in logged.splitlines()), logged


def test_server_still_serves_after_bad_requests(server):
    """Runs last: every bad request above left the server healthy."""
    assert httpx.get(f"{server}/readyz", timeout=10).status_code == 200
    response = post_audio(server, "clip.wav", wav_bytes(1.5))
    assert response.status_code == 200, response.text
    assert response.json()["label"] in LABELS
    assert json.loads(post_array(server, tone(1.0).tolist()).text)["label"] in LABELS
