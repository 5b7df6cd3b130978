"""`bentoml build` packs the service, its code, the registered model and locked requirements."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile

from conftest import REPO_ROOT


def bentoml_cli(home, *args: str) -> str:
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "bentoml", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def test_bentoml_build_contains_service_model_and_requirements(store, tmp_path):
    home, model_tag = store
    tag = bentoml_cli(home, "build", "--output", "tag").strip().splitlines()[-1].removeprefix("__tag__:")
    assert tag.startswith("emotion_classifier:")
    archive = tmp_path / "emotion.bento"
    bentoml_cli(home, "export", tag, str(archive))
    with tarfile.open(archive) as bento:
        names = {name.removeprefix("./") for name in bento.getnames()}
        requirements = bento.extractfile("./env/python/requirements.txt").read().decode()
        manifest = bento.extractfile("./bento.yaml").read().decode()
    name, version = model_tag.split(":")
    for path in (
        "src/service/service.py",
        "src/service/model_service.py",
        "src/pipeline/inference.py",
        "src/demo/app.py",
        f"models/{name}/{version}/model.safetensors",
        f"models/{name}/{version}/preprocessor_config.json",
        "env/docker/Dockerfile",
        "apis/openapi.yaml",
    ):
        assert path in names, path
    assert not any(n.startswith(("src/tests", "src/runs", "src/.venv")) for n in names)
    assert f"tag: {model_tag}" in manifest and "entry_service: EmotionClassifier" in manifest
    pinned = {line.split("==")[0] for line in requirements.splitlines() if "==" in line}
    assert {"torch", "torchaudio", "transformers", "bentoml", "gradio", "soundfile"} <= pinned
