"""The real BentoML server (REST /classify and the Gradio demo at /ui), started once per module."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest
import soundfile as sf
import yaml
from helpers import LABELS, export_to_store, make_tiny_checkpoint, running_server, tone, write_tone

from pipeline.errors import SerError
from pipeline.export import export_checkpoint

MAX_SECONDS = 4
MAX_UPLOAD_MB = 1
CONTRACT = {"label": str, "score": float, "scores": dict, "duration_s": float, "model": str}


def wav_bytes() -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, tone(), 16_000, format="WAV")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    (run / "metrics.json").write_text(json.dumps({"test": {"accuracy": 0.5, "uar": 0.25, "note": None}}))
    return make_tiny_checkpoint(run / "best")


@pytest.fixture(scope="module")
def store(tmp_path_factory, checkpoint) -> tuple[Path, str]:
    home = tmp_path_factory.mktemp("bentoml")
    return home, export_to_store(checkpoint, home)


@pytest.fixture(scope="module")
def server(store) -> str:
    home, tag = store
    env = {"SER_MAX_SECONDS": str(MAX_SECONDS), "SER_MAX_UPLOAD_MB": str(MAX_UPLOAD_MB)}
    with running_server(tag, home, env=env) as url:
        yield url


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    return {
        "wav": write_tone(d / "mono16k.wav", seconds=1.5),
        "flac": write_tone(d / "stereo44k.flac", sr=44_100, channels=2, f0=220),
        "ogg": write_tone(d / "clip22k.ogg", sr=22_050, f0=140),
        "mp3": write_tone(d / "clip44k.mp3", fmt="MP3", sr=44_100, f0=260),
        "long": write_tone(d / "long.wav", seconds=MAX_SECONDS + 2),
    }


def post_audio(url: str, filename: str, content: bytes, field: str = "audio") -> httpx.Response:
    return httpx.post(
        f"{url}/classify", files={field: (filename, content, "application/octet-stream")}, timeout=60
    )


def assert_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body, dict) and isinstance(body["error"], str) and body["error"]
    return body["error"]


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


def test_wav_answers_the_contract(server, store, clips):
    response = post_audio(server, "clip.wav", clips["wav"].read_bytes())
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == set(CONTRACT)
    for key, kind in CONTRACT.items():
        assert isinstance(body[key], kind), key
    assert list(body["scores"]) == LABELS
    assert sum(body["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    assert body["label"] in LABELS and body["score"] == max(body["scores"].values())
    assert body["duration_s"] == pytest.approx(1.5, abs=0.01)
    assert body["model"] == store[1]


@pytest.mark.parametrize("kind", ["flac", "ogg", "mp3"])
def test_other_formats_rates_and_stereo(server, clips, kind):
    response = post_audio(server, clips[kind].name, clips[kind].read_bytes())
    assert response.status_code == 200, response.text
    assert response.json()["label"] in LABELS
    assert response.json()["duration_s"] == pytest.approx(1.0, abs=0.05)


def test_same_answer_as_the_predictor(server, checkpoint, clips):
    from pipeline.inference import Predictor

    local = Predictor.from_pretrained(checkpoint).predict_source(clips["flac"])
    remote = post_audio(server, "clip.flac", clips["flac"].read_bytes()).json()
    assert remote["label"] == local.label
    assert remote["scores"] == pytest.approx(local.scores, abs=1e-4)


@pytest.mark.parametrize(
    "filename, content",
    [
        ("notes.wav", b"these are meeting notes, not audio\n" * 20),
        ("empty.wav", b""),
        ("truncated.wav", wav_bytes()[:40]),
        ("garbage.wav", b"RIFF" + bytes(range(256)) * 8),
    ],
    ids=["text-renamed-wav", "empty", "truncated-wav", "corrupt-wav"],
)
def test_bad_audio_is_400(server, filename, content):
    message = assert_error(post_audio(server, filename, content), 400)
    assert "audio" in message or "upload" in message


def test_missing_or_non_file_audio_field_is_400(server):
    response = post_audio(server, "clip.wav", wav_bytes(), field="file")
    assert_error(response, 400)
    assert response.json()["detail"][0]["loc"] == ["audio"]
    # A text field (BentoML would fetch it as a URL), a JSON body and no body at all.
    assert_error(httpx.post(f"{server}/classify", data={"audio": "http://127.0.0.1/clip.wav"}), 400)
    assert_error(httpx.post(f"{server}/classify", json={"audio": "clip.wav"}), 400)
    assert_error(httpx.post(f"{server}/classify"), 400)


def test_too_long_clip_is_422(server, clips):
    message = assert_error(post_audio(server, "long.wav", clips["long"].read_bytes()), 422)
    assert f"limit is {MAX_SECONDS} s" in message


def test_too_big_upload_is_413(server):
    content = b"RIFF" + bytes(MAX_UPLOAD_MB * 2**20 + 1024)
    assert "limit" in assert_error(post_audio(server, "big.wav", content), 413)

    boundary = "ser-test-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="audio"; filename="big.wav"\r\n\r\n'.encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    chunked = httpx.post(  # a generator body goes out chunked, without Content-Length
        f"{server}/classify",
        content=(body[i : i + 65536] for i in range(0, len(body), 65536)),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=60,
    )
    assert_error(chunked, 413)


def test_demo_page_is_served(server):
    response = httpx.get(f"{server}/ui/", timeout=30)
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    assert "gradio" in response.text.lower()


def test_demo_classifies_through_gradio(server, clips, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(f"{server}/ui/", verbose=False, download_files=str(tmp_path))
    result = client.predict(handle_file(str(clips["ogg"])), api_name="/classify")
    assert result["label"] in LABELS
    assert {c["label"] for c in result["confidences"]} == set(LABELS)
    with pytest.raises(Exception, match="limit is"):
        client.predict(handle_file(str(clips["long"])), api_name="/classify")


def test_server_still_serves_after_bad_requests(server, clips):
    """Runs last: every bad request above left the server healthy."""
    assert httpx.get(f"{server}/readyz", timeout=10).status_code == 200
    assert post_audio(server, "clip.wav", clips["wav"].read_bytes()).status_code == 200
