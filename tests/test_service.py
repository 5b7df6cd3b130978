"""The real BentoML server on a loopback port: both endpoints' contracts, the timeline, adaptive
batching and the 503 of a clip its queue drops, health and metrics (bad input: test_bad_input.py;
damaged uploads: test_fuzz.py)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import bentoml
import httpx
import numpy as np
import pytest
import soundfile as sf
import yaml
from conftest import SERVICE_ENV
from helpers import LABELS, assert_error, post_array, post_audio, tone, wav_bytes

from pipeline.errors import SerError
from pipeline.inference.export import export_checkpoint
from pipeline.inference.onnx_model import has_onnx
from pipeline.inference.predictor import Predictor

MAX_SECONDS = float(SERVICE_ENV["SER_MAX_SECONDS"])
CONTRACT = {"label": str, "score": float, "scores": dict, "duration_s": float, "model": str}
SEGMENT = {"start": float, "end": float, "label": str, "score": float, "scores": dict}


def assert_contract(body: dict, keys: dict = CONTRACT) -> None:
    assert set(body) >= set(keys)
    for key, kind in keys.items():
        assert isinstance(body[key], kind), key
    assert body["label"] in LABELS and body["score"] == max(body["scores"].values())


def test_export_rejects_a_directory_without_checkpoint(tmp_path):
    with pytest.raises(SerError, match="not a checkpoint directory"):
        export_checkpoint(tmp_path)


def test_export_records_labels_and_test_metrics(store):
    home, tag = store
    name, version = tag.split(":")
    info = yaml.safe_load((home / "models" / name / version / "model.yaml").read_text())
    assert info["metadata"]["labels"] == LABELS
    assert info["metadata"]["test_metrics"] == {"accuracy": 0.5, "uar": 0.25}
    assert (home / "models" / name / version / "model.safetensors").is_file()
    stored = home / "models" / name / version
    exported = {p.name for p in (stored / "onnx").iterdir()}
    assert exported == {"model.onnx", "model.int8.onnx", "weights.sha256"}
    assert has_onnx(stored)  # exported from the weights stored beside them


# `ser export` in a process whose ONNX exporter fails as it does on an operator it cannot convert.
FAILING_ONNX_EXPORT = """
import sys
import pipeline.inference.onnx_export as onnx_export

def unsupported(*args):
    raise RuntimeError("Exporting the operator 'aten::stft' to ONNX opset version 17 is not supported.")

onnx_export.export_onnx = unsupported
from pipeline.cli import main
print("exit", main(["export", "--checkpoint", sys.argv[1]]), flush=True)
print("exit", main(["export", "--checkpoint", sys.argv[1], "--no-onnx"]), flush=True)
"""


def test_an_onnx_export_failure_registers_nothing_and_no_onnx_registers_for_torch(
    service_checkpoint, tmp_path
):
    env = {**os.environ, "BENTOML_HOME": str(tmp_path), "BENTOML_DO_NOT_TRACK": "True"}
    checkpoint = shutil.copytree(service_checkpoint, tmp_path / "best", ignore=shutil.ignore_patterns("onnx"))
    done = subprocess.run(
        [sys.executable, "-c", FAILING_ONNX_EXPORT, str(checkpoint)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    first, second = [line for line in done.stdout.splitlines() if line.startswith("exit")]
    assert (first, second) == ("exit 2", "exit 0")
    (error,) = [line for line in done.stderr.splitlines() if "to ONNX" in line]
    assert "aten::stft" in error and "`ser export --no-onnx` registers it for the torch backend only" in error
    (version,) = (tmp_path / "models" / "ser-emotion").glob("*/model.safetensors")  # the second only
    assert not (version.parent / "onnx").exists() and not (checkpoint / "onnx" / "weights.sha256").exists()


def test_wav_answers_the_contract(server, store, clips):
    response = post_audio(server, "clip.wav", clips["wav"].read_bytes())
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == set(CONTRACT)
    assert_contract(body)
    assert list(body["scores"]) == LABELS
    assert sum(body["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    assert body["duration_s"] == pytest.approx(1.5, abs=0.01)
    assert body["model"] == store[1]


@pytest.mark.parametrize("kind", ["flac", "ogg", "mp3"])
def test_other_formats_rates_and_stereo(server, clips, kind):
    response = post_audio(server, clips[kind].name, clips[kind].read_bytes())
    assert response.status_code == 200, response.text
    assert response.json()["label"] in LABELS
    assert response.json()["duration_s"] == pytest.approx(1.0, abs=0.05)


def test_same_answer_as_the_predictor(server, service_checkpoint, clips):
    from pipeline.inference.predictor import Predictor

    local = Predictor.from_pretrained(service_checkpoint, precision="fp32").predict_source(clips["flac"])
    remote = post_audio(server, "clip.flac", clips["flac"].read_bytes()).json()
    assert remote["label"] == local.label
    assert remote["scores"] == pytest.approx(local.scores, abs=1e-4)


def test_top_k_answers_the_best_labels_first(server, clips):
    full = post_audio(server, "clip.wav", clips["wav"].read_bytes()).json()
    body = post_audio(server, "clip.wav", clips["wav"].read_bytes(), top_k=2).json()
    best = sorted(full["scores"].items(), key=lambda item: -item[1])[:2]
    assert list(body["scores"]) == [label for label, _ in best]
    assert list(body["scores"].values()) == pytest.approx([score for _, score in best])
    assert body["label"] == best[0][0] == full["label"]


def test_classify_array_answers_like_classify(server, clips):
    samples, sr = sf.read(clips["flac"], dtype="float32")  # 44.1 kHz stereo: frames of channels
    array = post_array(server, samples.tolist(), sr)
    assert array.status_code == 200, array.text
    assert_contract(array.json())
    upload = post_audio(server, "clip.flac", clips["flac"].read_bytes()).json()
    assert array.json()["label"] == upload["label"]
    assert array.json()["scores"] == pytest.approx(upload["scores"], abs=1e-4)
    mono = post_array(server, samples.mean(axis=1).tolist(), sr, top_k=1).json()
    assert list(mono["scores"]) == [mono["label"]]


def test_a_long_clip_gets_a_timeline_and_its_aggregate(server, clips):
    body = post_audio(server, "story.wav", clips["story"].read_bytes(), window_s=2, hop_s=1).json()
    assert_contract(body)
    segments = body["segments"]
    assert [s["start"] for s in segments] == [0, 1, 2, 3, 4, 5, 6, 7, 7.3]  # the last ends at the end
    for segment in segments:
        assert_contract(segment, SEGMENT)
        assert segment["end"] - segment["start"] == pytest.approx(2.0)
    assert segments[-1]["end"] == pytest.approx(body["duration_s"]) == pytest.approx(9.3)
    mean = {label: np.mean([s["scores"][label] for s in segments]) for label in LABELS}
    assert body["scores"] == pytest.approx(mean, abs=1e-6)
    samples, sr = sf.read(clips["story"], dtype="float32")
    array = post_array(server, samples.tolist(), sr, window_s=2, hop_s=1).json()
    for ours, theirs in zip(array["segments"], segments, strict=True):
        assert (ours["start"], ours["end"], ours["label"]) == (
            theirs["start"],
            theirs["end"],
            theirs["label"],
        )
        assert ours["scores"] == pytest.approx(theirs["scores"], abs=1e-4)


def _batch_histogram(url: str) -> tuple[float, float]:
    """(model calls, calls that held a single request) from the Prometheus metrics."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    calls = sum(map(float, re.findall(r"^ser_model_batch_requests_count(?:\{[^}]*\})? (\S+)", text, re.M)))
    single_bucket = r'^ser_model_batch_requests_bucket\{[^}]*le="1\.0"[^}]*\} (\S+)'
    single = sum(map(float, re.findall(single_bucket, text, re.M)))
    return calls, single


def test_concurrent_requests_get_the_answers_they_get_alone(server):
    """Mixed-length clips sent at once (merged into model calls where the dispatcher measures that
    it pays) each get the answer they get alone, and no request costs more than one model call."""
    rng = np.random.default_rng(7)
    waves = [(0.1 * rng.standard_normal(n)).tolist() for n in [8000, 16000, 24000, 12000, 16000, 8000] * 4]
    alone = [post_array(server, w).json()["scores"] for w in waves]
    calls_before, _ = _batch_histogram(server)
    with ThreadPoolExecutor(16) as pool:
        together = [r.json()["scores"] for r in pool.map(lambda w: post_array(server, w), waves)]
    calls, _ = _batch_histogram(server)
    assert 1 <= calls - calls_before <= len(waves)
    for a, b in zip(alone, together):
        assert b == pytest.approx(a, abs=1e-4)


class AlwaysMerge:
    """A merge rule that merges every time (the measured rule decides by the machine's timings)."""

    def merge(self) -> bool:
        return True

    def observe(self, merged: bool, seconds: float, audio_samples: int) -> None:
        pass


def test_merged_model_calls_give_each_clip_its_own_answer(service_checkpoint):
    """The dispatcher's merged calls on the group-norm model: clips of mixed lengths submitted at
    once share calls, and each gets the network's answer for it alone."""
    from service.dispatcher import Dispatcher

    predictor = Predictor.from_pretrained(service_checkpoint, precision="fp32", backend="onnx")
    sizes = []

    def model(waves):
        sizes.append(len(waves))
        return predictor.network_logits(waves)

    rng = np.random.default_rng(7)
    waves = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in [8000, 16000, 12000, 16000] * 6]
    alone = [predictor.network_logits([w])[0] for w in waves]
    dispatcher = Dispatcher(model, max_clips=16, max_wait_s=60, rule=AlwaysMerge())
    with ThreadPoolExecutor(12) as pool:
        together = list(pool.map(lambda w: dispatcher([w])[0], waves))
    assert len(sizes) < len(waves) and max(sizes) > 1, sizes
    for a, b in zip(alone, together):
        np.testing.assert_allclose(b, a, atol=1e-4)


IMPATIENT_MS = 10


@pytest.fixture(scope="module")
def second(store) -> str:
    """A second server on the session's model store, whose batching queue drops a clip that waits
    more than IMPATIENT_MS (a lone clip is never held: sequential requests all pass)."""
    from servers import running_service

    home, tag = store
    with running_service(tag, home, env={**SERVICE_ENV, "SER_MAX_LATENCY_MS": str(IMPATIENT_MS)}) as url:
        yield url


def test_a_second_server_on_the_same_store_leaves_the_first_ones_metrics_counting(server, second):
    """Regression: `bentoml serve` empties its home's Prometheus directory as it starts, so a second
    server on the same home froze the first one's /metrics (each server now gets a home of its own)."""
    wave = (0.1 * np.random.default_rng(5).standard_normal(16000)).tolist()
    calls_before, _ = _batch_histogram(server)
    assert post_array(server, wave).status_code == 200
    assert _batch_histogram(server)[0] == calls_before + 1
    assert _batch_histogram(second)[0] == 1  # its readiness check's call only
    assert post_array(second, wave).status_code == 200
    assert _batch_histogram(second)[0] == 2
    assert _batch_histogram(server)[0] == calls_before + 1


def test_a_clip_dropped_by_the_batching_queue_gets_a_json_503(second):
    """Bursts of 32 concurrent clips to the second server: the clips its queue drops (they waited
    longer than SER_MAX_LATENCY_MS) get 503 with a JSON error that says so, the others their answer;
    afterwards a lone clip is answered. Until this test, such a drop answered 503 "An unexpected
    error has occurred, please check the server log." (and logged an ERROR with a traceback)."""
    rng = np.random.default_rng(11)
    waves = [(0.1 * rng.standard_normal(32000)).tolist() for _ in range(32)]
    statuses: list[int] = []
    with ThreadPoolExecutor(32) as pool:
        for _ in range(5):  # a burst on a fast machine might not make a clip wait 10 ms
            responses = list(pool.map(lambda w: post_array(second, w), waves))
            statuses += [r.status_code for r in responses]
            for response in responses:
                if response.status_code == 503:
                    message = assert_error(response, 503)
                    assert message == (
                        f"the server is busy: the clip waited more than {IMPATIENT_MS} ms for the model "
                        "(SER_MAX_LATENCY_MS); try again later"
                    )
                    assert response.headers["retry-after"] == "1"
                else:
                    assert response.status_code == 200, response.text
                    assert_contract(response.json())
            if 503 in statuses:
                break
    assert 503 in statuses and 200 in statuses, statuses
    for _ in range(3):  # a lone clip waits past the bound only if this machine stalls: retry, as asked
        answer = post_array(second, waves[0])
        if answer.status_code != 503:
            break
        time.sleep(float(answer.headers["retry-after"]))
    assert answer.status_code == 200, answer.text


def test_bursts_after_idle_pauses_all_succeed(server):
    """Regression: after the model service's 5-s keep-alive closed idle connections, a burst reused
    them and about 1 request in 10 answered 500 (bentoml/BentoML#4971)."""
    rng = np.random.default_rng(3)
    waves = [(0.1 * rng.standard_normal(16000)).tolist() for _ in range(64)]
    statuses = []
    for _ in range(3):
        time.sleep(5.5)
        with ThreadPoolExecutor(16) as pool:
            statuses += [r.status_code for r in pool.map(lambda w: post_array(server, w), waves)]
    assert statuses == [200] * len(statuses)


def test_health_metrics_and_openapi(server):
    assert httpx.get(f"{server}/livez", timeout=10).status_code == 200
    assert httpx.get(f"{server}/readyz", timeout=10).status_code == 200
    metrics = httpx.get(f"{server}/metrics", timeout=10)
    assert metrics.status_code == 200 and "bentoml_service_request_total" in metrics.text
    spec = httpx.get(f"{server}/docs.json", timeout=10).json()
    assert {"/classify", "/classify_array", "/info"} <= set(spec["paths"])
    assert httpx.get(f"{server}/", timeout=10).status_code == 200  # the Swagger page
    info = httpx.post(f"{server}/info", timeout=10).json()
    assert info["labels"] == LABELS and info["max_seconds"] == MAX_SECONDS
    assert (info["precision"], info["device"]) == ("fp32", "cpu")
    assert info["functionals"] is None and info["calibration_temperature"] == 1.0  # a network alone


def test_the_python_client_of_the_docs(server, tmp_path):
    """BentoML's own client, as docs/api.md shows it: a file upload and an array."""
    path = tmp_path / "clip.wav"
    path.write_bytes(wav_bytes(1.0))
    with bentoml.SyncHTTPClient(server) as client:
        answer = client.classify(audio=path, top_k=2)
        same = client.classify_array(samples=tone(1.0).tolist(), sampling_rate=16_000)
        info = client.info()
    assert answer["label"] in LABELS and len(answer["scores"]) == 2 and answer["model"]
    assert same["label"] in LABELS and set(same["scores"]) == set(LABELS)
    assert info["labels"] == LABELS
