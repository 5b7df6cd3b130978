"""The Bento: `bentoml build` packs the service, its code, the registered model and the locked
requirements, and those requirements alone make a working server (what `bentoml containerize`
would build, checked without Docker)."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import httpx
import pytest
from conftest import REPO_ROOT
from helpers import wav_bytes
from packaging.requirements import Requirement
from servers import background_server, free_port

UV = Path(sys.executable).with_name("uv")  # the locked uv (dev group), as `make` installs it
TRAINING_ONLY = {
    "torch", "torchaudio", "transformers", "datasets", "accelerate", "evaluate", "optuna", "tensorboard",
    "scipy", "scikit-learn", "matplotlib", "onnx",
}  # fmt: skip
MAX_SERVING_ENV_MB = 600


def bentoml_cli(home, *args: str) -> str:
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "bentoml", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def requirement_lines(text: str) -> list[str]:
    """The requirements of a requirements file, normalised (BentoML rewrites markers), in order."""
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [str(Requirement(line)) for line in lines if line]


@pytest.fixture(scope="module")
def bento(store, tmp_path_factory) -> tuple[str, Path]:
    """(tag, archive) of a Bento built from the repository with the session's model registered."""
    home, _ = store
    tag = bentoml_cli(home, "build", "--output", "tag").strip().splitlines()[-1].removeprefix("__tag__:")
    archive = tmp_path_factory.mktemp("bento") / "emotion.bento"
    bentoml_cli(home, "export", tag, str(archive))
    return tag, archive


def test_bento_requirements_are_the_lock_exported():
    """service/requirements.txt (what bentofile.yaml installs) is exactly uv.lock's serving packages
    (the project's dependencies without the `train` extra): `make lock` rewrites both together."""
    committed = (REPO_ROOT / "service" / "requirements.txt").read_text()
    recorded = committed.splitlines()[1].lstrip("# ").split()  # the `uv export` command that wrote it
    export = recorded[1 : recorded.index("--output-file")]
    done = subprocess.run([str(UV), *export, "--quiet"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert requirement_lines(committed) == requirement_lines(done.stdout), "run `make lock`"
    pinned = {line.split("==")[0] for line in requirement_lines(committed)}
    assert {"bentoml", "gradio", "onnxruntime", "soundfile", "opensmile"} <= pinned
    assert not pinned & TRAINING_ONLY, "the serving install carries training packages"


def test_bentoml_build_contains_service_model_and_requirements(bento, store):
    tag, archive = bento
    _, model_tag = store
    assert tag.startswith("emotion_classifier:")
    with tarfile.open(archive) as packed:
        names = {name.removeprefix("./") for name in packed.getnames()}
        requirements = packed.extractfile("./env/python/requirements.txt").read().decode()
        manifest = packed.extractfile("./bento.yaml").read().decode()
    name, version = model_tag.split(":")
    for path in (
        "src/service/service.py",
        "src/service/dispatcher.py",
        "src/pipeline/inference/predictor.py",
        "src/demo/app.py",
        "src/demo/examples/neutral.flac",
        f"models/{name}/{version}/model.safetensors",
        f"models/{name}/{version}/preprocessor_config.json",
        "env/docker/Dockerfile",
        "apis/openapi.yaml",
    ):
        assert path in names, path
    assert not any(n.startswith(("src/tests", "src/runs", "src/.venv")) for n in names)
    assert f"tag: {model_tag}" in manifest and "entry_service: EmotionClassifier" in manifest
    locked = requirement_lines((REPO_ROOT / "service" / "requirements.txt").read_text())
    assert set(locked) <= set(requirement_lines(requirements))  # BentoML may add its own pin again
    pinned = {line.split("==")[0] for line in locked}
    assert {"onnxruntime", "bentoml", "gradio", "soundfile"} <= pinned and not pinned & TRAINING_ONLY


@pytest.mark.timeout(600)
def test_a_clean_virtualenv_of_the_bentos_requirements_serves_a_request(bento, tmp_path):
    """What the Bento's Dockerfile does, without Docker: a new virtualenv with the Bento's own
    requirements and nothing else (`uv venv`, `uv pip install -r env/python/requirements.txt`), and
    that virtualenv's `bentoml serve` of the unpacked Bento, which imports the service module from the
    Bento's src/ (a missing package stops it; the error carries the server's log), answering a clip."""
    _, archive = bento
    unpacked = tmp_path / "bento"
    unpacked.mkdir()
    with tarfile.open(archive) as packed:
        packed.extractall(unpacked, filter="data")
    venv = tmp_path / "venv"
    env = {
        **os.environ,  # HOME keeps uv's cache: the packages `make` installed are not downloaded again
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "VIRTUAL_ENV": str(venv),
        "BENTOML_HOME": str(tmp_path / "home"),  # empty: the model comes from the Bento
        "BENTO_PATH": str(unpacked),
        "BENTOML_DO_NOT_TRACK": "True",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": "",
    }
    for command in (
        [str(UV), "venv", "--quiet", "--python", sys.executable, str(venv)],
        [str(UV), "pip", "install", "--quiet", "-r", str(unpacked / "env/python/requirements.txt")],
    ):
        done = subprocess.run(command, cwd=unpacked, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{command[:3]}:\n{done.stderr[-3000:]}"
    installed = subprocess.run(
        [str(UV), "pip", "freeze", "--quiet"], env=env, capture_output=True, text=True, check=True
    ).stdout
    locked = set(requirement_lines((REPO_ROOT / "service" / "requirements.txt").read_text()))
    pins = {line.split(";")[0].strip() for line in locked}
    assert set(requirement_lines(installed)) <= pins, "the Bento installed versions that are not locked"
    names = {line.split("==")[0].lower() for line in requirement_lines(installed)}
    assert not names & TRAINING_ONLY and not any(name.startswith("nvidia-cu") for name in names)
    python = str(venv / "bin/python")
    absent = "import importlib.util as u; print([m for m in ('torch', 'transformers') if u.find_spec(m)])"
    assert subprocess.run([python, "-c", absent], env=env, capture_output=True, text=True).stdout == "[]\n"
    size_mb = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20
    assert size_mb <= MAX_SERVING_ENV_MB, f"the serving environment takes {size_mb:.0f} MB"

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = [str(venv / "bin/bentoml"), "serve", str(unpacked), "--host", "127.0.0.1", "--port", str(port)]
    with background_server(serve, f"{url}/readyz", tmp_path / "server.log", env, timeout=300, cwd=unpacked):
        response = httpx.post(
            f"{url}/classify", files={"audio": ("clip.wav", wav_bytes(1.0), "audio/wav")}, timeout=60
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body["scores"]) == {"angry", "happy", "neutral", "sad"}
    assert abs(sum(body["scores"].values()) - 1) < 1e-4
