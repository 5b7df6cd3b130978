"""Servers in the background, for tests and benchmarks: any command until its readiness URL answers,
and the BentoML service for a model of a given store."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.inference.serve import REPO_ROOT, SERVICE


def cpu_model() -> str:
    """The CPU's model name, printed beside every benchmark's figures (machines differ)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def background_server(
    command: list[str],
    ready_url: str,
    log_path: str | Path,
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
    cwd: str | Path = REPO_ROOT,
) -> Iterator[subprocess.Popen]:
    """Run `command` (a server) in `cwd`, in its own session, until `ready_url` answers 200; yield its
    process, then stop it.

    Its output goes to `log_path`; if it exits or `timeout` passes first, the error carries the log.
    """
    import httpx

    log_path = Path(log_path)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env={**os.environ, **(env or {})},
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
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    break
            time.sleep(0.25)
        yield proc
    finally:
        proc.terminate()  # BentoML's arbiter stops its workers on SIGTERM
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the server and its workers only
            proc.wait()


def export_to_store(checkpoint: str | Path, bentoml_home: str | Path) -> str:
    """Register `checkpoint` in the model store at `bentoml_home`; return the tag.

    Runs in a subprocess: BentoML fixes its store location the first time it is used in a process.
    """
    code = (
        "import sys; from pipeline.inference.export import export_checkpoint; "
        "print(export_checkpoint(sys.argv[1]))"
    )
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "True"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(checkpoint)], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"export failed:\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


@dataclass(frozen=True)
class RunningService:
    url: str  # base URL
    pid: int  # `bentoml serve`: its worker is a descendant
    log: Path  # its output, and its workers'


@contextlib.contextmanager
def running_service(
    tag: str,
    bentoml_home: str | Path,
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
    python: str | Path = sys.executable,
) -> Iterator[str]:
    """The BentoML service for model `tag` of the store at `bentoml_home` on a free loopback port,
    ready (warm-up done); yields its base URL. `env` adds variables (e.g. SER_MAX_SECONDS)."""
    with service_process(tag, bentoml_home, env, timeout, python) as service:
        yield service.url


@contextlib.contextmanager
def own_home(bentoml_home: str | Path, name: str) -> Iterator[Path]:
    """A BentoML home for one server that shares the model store at `bentoml_home`, removed after.

    `bentoml serve` (BentoML >=1.4.30,<1.5) empties `<home>/prometheus_multiproc_dir` as it starts,
    under any server already running on that home, whose /metrics then stop counting: servers must
    not share a home.
    """
    home = Path(bentoml_home) / "servers" / name
    home.mkdir(parents=True)
    (home / "models").symlink_to(Path(bentoml_home).absolute() / "models", target_is_directory=True)
    try:
        yield home
    finally:
        shutil.rmtree(home)  # the link, not the store it points to


@contextlib.contextmanager
def service_process(
    tag: str,
    bentoml_home: str | Path,
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
    python: str | Path = sys.executable,
) -> Iterator[RunningService]:
    """`running_service`, yielding the server's process id and log with its URL (to watch its
    resources and what it logs); `python` is the environment's interpreter (the serving install's,
    or this one)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(python), "-m", "bentoml", "serve", SERVICE, "--host", "127.0.0.1", "--port", str(port)]
    with own_home(bentoml_home, f"port-{port}") as home:
        server_env = {
            "BENTOML_HOME": str(home),
            "SER_MODEL_TAG": tag,
            "BENTOML_DO_NOT_TRACK": "True",
            "HF_HUB_OFFLINE": "1",
            **(env or {}),
        }
        log_path = Path(bentoml_home) / f"server-{port}.log"
        with background_server(command, f"{url}/readyz", log_path, server_env, timeout) as proc:
            yield RunningService(url, proc.pid, log_path)


@contextlib.contextmanager
def alternative_server(checkpoint: str | Path, log_path: str | Path) -> Iterator[tuple[str, int]]:
    """The straightforward alternative (`scripts/baseline_server.py`: FastAPI + `transformers.pipeline`)
    on `checkpoint`, on a free loopback port; yields its base URL and process id."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "baseline_server:app", "--app-dir", f"{REPO_ROOT}/scripts"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    url = f"http://127.0.0.1:{port}"
    env = {"BASELINE_MODEL": str(checkpoint)}
    with background_server(command, f"{url}/health", log_path, env, 300) as proc:
        yield url, proc.pid
