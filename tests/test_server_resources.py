"""The server's resources stay bounded: uploads leave no temporary files behind, resident memory
is flat over a soak of 3,000 requests at concurrency 16 (figures: test-artifacts/soak.json), and
made-up paths do not grow /metrics.

The session's server (`served` in conftest.py): its TMPDIR is an empty directory of its own and its
process id is known."""

from __future__ import annotations

import json
import os
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import psutil
import pytest
from conftest import REPO_ROOT
from helpers import LABELS, post_audio, tone, wav_bytes
from httpx_ws import connect_ws

ARTIFACTS = Path(os.environ.get("SER_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts"))
WARM_UP_REQUESTS, SOAK_REQUESTS, CONCURRENCY = 300, 3000, 16
MAX_RSS_CHANGE = 0.10


def server_errors(url: str) -> float:
    """Requests answered 5xx so far, from the Prometheus metrics (they count even the answers that
    no client was left to read). Not /readyz's 503s: that is its answer until the warm-up is done."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    assert 'http_response_code="200"' in text  # the series this reads exist
    series = re.findall(r"bentoml_service_request_total\{([^}]*)\} (\S+)", text)
    return sum(
        float(value)
        for labels, value in series
        if re.search(r'http_response_code="5\d\d"', labels) and 'endpoint="/readyz"' not in labels
    )


def files_under(directory: Path) -> set[Path]:
    return {path for path in directory.rglob("*") if path.is_file()}


def disconnect_mid_upload(url: str) -> None:
    """Send half of a multipart upload, then hang up."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as conn:
        conn.sendall(
            b"POST /classify HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            b"Content-Length: 200000\r\n\r\n"
            b'--x\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n\r\n'
            + wav_bytes(2.0)[:90_000]
        )


def test_uploads_leave_no_temporary_files(served):
    service, tmpdir = served
    before = files_under(tmpdir)  # what the server wrote at start-up
    # the demo's example clips ship with it: only Gradio's own (content-addressed) cache copies them
    assert not [p for p in before if p.suffix in (".wav", ".flac") and "gradio" not in p.parts]
    good = [wav_bytes(1.0), wav_bytes(2.5, seed=1)]
    bad = [b"", b"not audio" * 100, wav_bytes()[:44], b"RIFF" + bytes(5 * 2**20)]
    for content in good + bad:
        post_audio(service.url, "clip.wav", content)
    post_audio(service.url, "clip.wav", wav_bytes(), top_k=0)  # decoded, then refused
    with ThreadPoolExecutor(8) as pool:
        statuses = list(
            pool.map(lambda i: post_audio(service.url, f"{i}.wav", good[i % 2]).status_code, range(32))
        )
    assert statuses == [200] * 32
    disconnect_mid_upload(service.url)
    assert any(tmpdir.glob("bentoml-request-*")), "uploads did not go through TMPDIR: the test proves nothing"
    deadline = time.monotonic() + 10  # a request's files are removed just after its answer is sent
    while (left := files_under(tmpdir) - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, sorted(map(str, left))
    assert post_audio(service.url, "clip.wav", good[0]).json()["label"] in LABELS
    assert server_errors(service.url) == 0


def tree_rss(pid: int) -> int:
    """Resident memory of a process and all its descendants, in bytes."""
    root = psutil.Process(pid)
    total = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def request_bodies() -> list[tuple[str, bytes, dict[str, str]]]:
    """Encoded once: uploads and arrays of short clips (0.5-1.2 s), alternating."""
    bodies = []
    for i in range(8):
        seconds = 0.5 + 0.1 * i
        upload = httpx.Request("POST", "http://x", files={"audio": (f"{i}.wav", wav_bytes(seconds, seed=i))})
        bodies.append(("/classify", upload.read(), {"Content-Type": upload.headers["Content-Type"]}))
        samples = json.dumps({"samples": tone(seconds, seed=i).tolist(), "sampling_rate": 16_000}).encode()
        bodies.append(("/classify_array", samples, {"Content-Type": "application/json"}))
    return bodies


def load(client: httpx.Client, url: str, n: int) -> tuple[int, float]:
    """`n` requests, at most CONCURRENCY in flight; (failed requests, seconds)."""
    bodies = request_bodies()

    def one(i: int) -> bool:
        path, content, headers = bodies[i % len(bodies)]
        try:
            response = client.post(f"{url}{path}", content=content, headers=headers)
            return response.status_code == 200 and response.json()["label"] in LABELS
        except httpx.HTTPError:
            return False

    started = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        ok = list(pool.map(one, range(n)))
    return ok.count(False), time.perf_counter() - started


@pytest.mark.slow
def test_soak_has_no_failures_and_flat_memory(served):
    service, _ = served
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    with httpx.Client(timeout=120, limits=limits) as client:
        warm_failures, _ = load(client, service.url, WARM_UP_REQUESTS)
        time.sleep(1)
        rss_warm = tree_rss(service.pid)
        failures, seconds = load(client, service.url, SOAK_REQUESTS)
        time.sleep(1)
        rss_after = tree_rss(service.pid)
    figures = {
        "requests": SOAK_REQUESTS,
        "concurrency": CONCURRENCY,
        "failed": failures,
        "seconds": round(seconds, 1),
        "requests_per_s": round(SOAK_REQUESTS / seconds, 1),
        "warm_up_requests": WARM_UP_REQUESTS,
        "rss_after_warm_up_mb": round(rss_warm / 2**20, 1),
        "rss_after_mb": round(rss_after / 2**20, 1),
        "rss_change_pct": round(100 * (rss_after / rss_warm - 1), 2),
    }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "soak.json").write_text(json.dumps(figures, indent=2) + "\n")
    print("soak:", json.dumps(figures))
    assert warm_failures == 0 and failures == 0 and server_errors(service.url) == 0, figures
    assert abs(rss_after / rss_warm - 1) <= MAX_RSS_CHANGE, figures


def metrics(url: str) -> str:
    return httpx.get(f"{url}/metrics", timeout=10).text


def random_paths(n: int, seed: int) -> list[tuple[str, str]]:
    """(method, path): made-up paths at the top, under the API's and under the demo's."""
    rng = np.random.default_rng(seed)
    prefixes = ["", "/classify", "/info", "/ui", "/docs.json", "/metrics"]
    return [
        (
            str(rng.choice(["GET", "POST", "PUT", "DELETE"])),
            f"{rng.choice(prefixes)}/{rng.integers(1e12):x}{rng.choice(['', '/x', '.php'])}",
        )
        for _ in range(n)
    ]


def test_made_up_paths_do_not_grow_the_metrics(served):
    """1,000 requests to made-up paths leave /metrics the size it was (within 1 %): they share one
    label (their route's, or `/<unknown>`) instead of a series each."""
    service, _ = served
    with httpx.Client(timeout=30) as client:

        def send(request: tuple[str, str]) -> int:
            return client.request(request[0], f"{service.url}{request[1]}").status_code

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(send, random_paths(50, seed=1)))  # every label these can have, once
            before = metrics(service.url)
            statuses = list(pool.map(send, random_paths(1000, seed=2)))
    after = metrics(service.url)
    assert set(statuses) <= {404, 405, 200} and 404 in statuses  # (/docs.json/x reaches the Swagger page)
    assert abs(len(after) - len(before)) <= 0.01 * len(before), (len(before), len(after))
    assert 'endpoint="/<unknown>"' in after and "/classify/" not in after
    assert server_errors(service.url) == 0


def test_the_metrics_count_open_streams_and_calls_waiting_for_the_model(served):
    service, _ = served

    def gauge(name: str) -> float:
        return float(re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", metrics(service.url), re.M).group(1))

    assert gauge("ser_model_queue") == 0
    assert gauge("ser_open_streams") == 0
    with connect_ws(service.url.replace("http://", "ws://") + "/stream") as ws:
        ws.send_text(json.dumps({"sampling_rate": 16_000, "format": "float32"}))
        assert ws.receive_json(timeout=30)["type"] == "ready"
        assert gauge("ser_open_streams") == 1
    deadline = time.monotonic() + 10
    while gauge("ser_open_streams") != 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gauge("ser_open_streams") == 0
