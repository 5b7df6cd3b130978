"""Reusable test helpers: a tiny random checkpoint, synthetic audio, a real BentoML server process."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

REPO_ROOT = Path(__file__).resolve().parents[1]
LABELS = ["angry", "happy", "neutral", "sad"]


def make_tiny_checkpoint(
    directory: str | Path, labels: list[str] = LABELS, seed: int = 0, norm: str = "layer"
) -> Path:
    """Write a randomly initialised small wav2vec2 classifier as a `save_pretrained` directory.

    `norm="group"` makes it wav2vec2-base style: a group-norm feature encoder run without an
    attention mask, whose answers zero padding would change.
    """
    import torch

    from pipeline.config import ModelConfig
    from pipeline.model import build_feature_extractor, build_model

    directory = Path(directory)
    torch.manual_seed(seed)
    cfg = ModelConfig()
    cfg.small = cfg.small | {"feat_extract_norm": norm}
    build_model(cfg, labels).save_pretrained(directory, safe_serialization=True)
    extractor = build_feature_extractor(cfg)
    extractor.return_attention_mask = norm == "layer"
    extractor.save_pretrained(directory)
    return directory


def tone(
    seconds: float = 1.0, sr: int = 16_000, channels: int = 1, f0: float = 180.0, seed: int = 0
) -> np.ndarray:
    """A harmonic tone with a little noise, shaped (frames,) or (frames, channels), float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    wave = 0.3 * wave / np.abs(wave).max() + 0.01 * rng.standard_normal(t.size)
    if channels > 1:
        wave = np.stack([wave * (1 - 0.2 * c) for c in range(channels)], axis=1)
    return wave.astype(np.float32)


def write_tone(path: str | Path, fmt: str | None = None, **tone_kwargs) -> Path:
    """Write `tone(**tone_kwargs)` to `path` (format from the suffix unless `fmt` is given)."""
    sr = tone_kwargs.get("sr", 16_000)
    sf.write(str(path), tone(**tone_kwargs), sr, format=fmt)
    return Path(path)


def export_to_store(checkpoint: str | Path, bentoml_home: str | Path) -> str:
    """Register `checkpoint` in the model store at `bentoml_home`; return the tag.

    Runs in a subprocess: BentoML fixes its store location the first time it is used in a process.
    """
    code = "import sys; from pipeline.export import export_checkpoint; print(export_checkpoint(sys.argv[1]))"
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "True"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(checkpoint)], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"export failed:\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(
    tag: str,
    bentoml_home: str | Path,
    port: int | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
) -> Iterator[str]:
    """Run `bentoml serve service.service:EmotionClassifier` as a subprocess; yield its base URL.

    `tag` is a model tag in the store at `bentoml_home` (e.g. the return value of
    `pipeline.export.export_checkpoint` called with BENTOML_HOME set to it). `port` defaults to a
    free one; `env` adds variables (e.g. SER_MAX_SECONDS). Waits for GET /readyz to answer 200,
    fails with the server log if the process exits or `timeout` passes, and stops it on exit.
    """
    port = port or free_port()
    log_path = Path(bentoml_home) / f"server-{port}.log"
    server_env = {
        **os.environ,
        "BENTOML_HOME": str(bentoml_home),
        "SER_MODEL_TAG": tag,
        "BENTOML_DO_NOT_TRACK": "True",
        "HF_HUB_OFFLINE": "1",
        **(env or {}),
    }
    command = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        "service.service:EmotionClassifier",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    base_url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=server_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not ready after {timeout:g} s:\n{log_path.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                    break
            time.sleep(0.25)
        yield base_url
    finally:
        proc.terminate()  # BentoML's arbiter stops its workers on SIGTERM
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the server and its workers only
            proc.wait()
