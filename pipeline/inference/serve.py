"""`ser serve`: the BentoML server (REST API and Gradio demo) in the foreground."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from .export import export_checkpoint, stored_model

SERVICE = "service.service:EmotionClassifier"
REPO_ROOT = Path(importlib.util.find_spec("service").origin).parent.parent  # the directory holding `service`


def serve(model: str, port: int = 3000, host: str = "0.0.0.0") -> int:
    """Run `bentoml serve` for the emotion service on `model` until it exits; return its exit code.

    `model` is a BentoML model store tag (`ser export`), or a checkpoint directory, registered first
    (`ser export`); SerError if the tag is not in the store.
    """
    if Path(model).is_dir():
        model = export_checkpoint(model)
    tag = str(stored_model(model).tag)  # fail fast, in one line, before the server starts
    command = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        SERVICE,
        "--host",
        host,
        "--port",
        str(port),
        "--working-dir",
        str(REPO_ROOT),
    ]
    shown = "localhost" if host in ("0.0.0.0", "::") else host
    print(f"REST API: POST http://{shown}:{port}/classify (multipart field 'audio')")
    print(f"API docs: http://{shown}:{port}/")
    print(f"Demo UI:  http://{shown}:{port}/ui")
    print(f"model:    {tag}")
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True", "SER_MODEL_TAG": tag}
    server = subprocess.Popen(command, env=env)
    try:
        return server.wait()
    except KeyboardInterrupt:  # the server got the Ctrl+C too: let it shut down cleanly
        return server.wait()
