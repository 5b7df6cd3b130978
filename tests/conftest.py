"""Shared fixtures: one tiny demo corpus, prepared once, trained once, for the whole session."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["BENTOML_DO_NOT_TRACK"] = "True"

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_TRAIN = ["train.epochs=2", "train.batch_size=8", "data.max_train_seconds=1.5"]


def _checked(done: subprocess.CompletedProcess, check: bool) -> subprocess.CompletedProcess:
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(done.args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done


def ser(*args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real `ser` console command."""
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    return _checked(done, check)


@pytest.fixture
def ser_here(capsys):
    """`ser` run in this process: the console command's own `main()`, its exit code and output,
    without a new interpreter's start-up (about 10 s of imports on these CPUs). For commands that
    neither train nor serve; `ser` itself keeps the tests of the real console command."""
    from pipeline.cli import main

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse's usage errors
            code = exit_.code
        out = capsys.readouterr()
        return _checked(subprocess.CompletedProcess(["ser", *args], code, out.out, out.err), check)

    return run


# Fixtures that train, serve or run the CLI: a test marked `fast` (`make test-fast`) may not use them.
HEAVY_FIXTURES = {"corpus", "prepared", "trained", "store", "served", "server", "service_checkpoint"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        heavy = HEAVY_FIXTURES.intersection(item.fixturenames)
        if item.get_closest_marker("fast") and heavy:
            raise pytest.UsageError(f"{item.nodeid} is marked fast but uses {', '.join(sorted(heavy))}")
    items.sort(key=lambda item: "default_training" in item.fixturenames)  # it waits: last


# The full default training: demo corpus (40 speakers, 960 clips), prepared, trained with the
# default config, on one thread, in the background from the start of the run.
DEFAULT_TRAINING = """
set -e
"$PY" -m pipeline.cli synth --output-dir "$OUT/corpus"
"$PY" -m pipeline.cli prepare --corpus auto --data-dir "$OUT/corpus" --output-dir "$OUT/data" --num-proc 1
"$PY" -m pipeline.cli train --config configs/default.yaml --data "$OUT/data" --output-dir "$OUT/run" \
    train.report_to=[]
"""


@pytest.fixture(scope="session", autouse=True)
def _default_training_job(request, tmp_path_factory):
    """Starts the full default training when a selected test needs it; yields (process, its
    output directory, its log) or None."""
    if not any("default_training" in item.fixturenames for item in request.session.items):
        yield None
        return
    out = tmp_path_factory.mktemp("default-training")
    env = {
        **os.environ,
        "PY": sys.executable,
        "OUT": str(out),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    log = out / "log.txt"
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            ["bash", "-c", DEFAULT_TRAINING],
            cwd=REPO_ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc, out, log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def default_training(_default_training_job) -> Path:
    """The output directory of the full default training (`metrics.json`, `best/`), once done."""
    proc, out, log = _default_training_job
    code = proc.wait(timeout=2400)
    assert code == 0, log.read_text()[-3000:]
    return out / "run"


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    ser("synth", "--output-dir", str(out), "--speakers", "5", "--utterances", "4", "--seed", "1")
    return out


@pytest.fixture(scope="session")
def prepared(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared")
    ser("prepare", "--corpus", "auto", "--data-dir", str(corpus), "--output-dir", str(out))
    return out


@pytest.fixture(scope="session")
def trained(prepared, tmp_path_factory) -> Path:
    """A run directory holding best/ and metrics.json from a 2-epoch run of the tiny model."""
    out = tmp_path_factory.mktemp("run")
    ser(
        "train",
        "--config",
        str(REPO_ROOT / "configs" / "default.yaml"),
        "--data",
        str(prepared),
        "--output-dir",
        str(out),
        *TINY_TRAIN,
    )
    return out


# The served model: a tiny random wav2vec2-base style checkpoint (group-norm encoder, no attention
# mask: the hard case for batching), registered once and served once for the whole session.
# fp32, so that answers can be compared with the in-process predictor to 1e-4 (the journey test
# serves at the default precision).
SERVICE_ENV = {
    "SER_MAX_SECONDS": "20",
    "SER_MAX_UPLOAD_MB": "4",
    "SER_PRECISION": "fp32",
    "SER_STREAM_MAX_OPEN": "3",
    "SER_STREAM_IDLE_S": "3",
    "SER_STREAM_MAX_SECONDS": "20",
    "SER_STREAM_MAX_MESSAGE_KB": "64",
}


@pytest.fixture(scope="session")
def service_checkpoint(tmp_path_factory) -> Path:
    import json

    from helpers import make_tiny_checkpoint

    run = tmp_path_factory.mktemp("service-run")
    (run / "metrics.json").write_text(json.dumps({"test": {"accuracy": 0.5, "uar": 0.25, "note": None}}))
    return make_tiny_checkpoint(run / "best", norm="group")


@pytest.fixture(scope="session")
def store(tmp_path_factory, service_checkpoint) -> tuple[Path, str]:
    """(BENTOML_HOME, model tag) with the service checkpoint registered."""
    from servers import export_to_store

    home = tmp_path_factory.mktemp("bentoml")
    return home, export_to_store(service_checkpoint, home)


@pytest.fixture(scope="session")
def serving_python(tmp_path_factory) -> Path:
    """The interpreter of a virtualenv made from the serving install alone (service/requirements.txt,
    what the Bento installs: no torch), by the locked uv, from its cache where `make` filled it."""
    venv = tmp_path_factory.mktemp("serving") / "venv"
    uv = Path(sys.executable).with_name("uv")
    env = {**os.environ, "VIRTUAL_ENV": str(venv)}
    for command in (
        [str(uv), "venv", "--quiet", "--python", sys.executable, str(venv)],
        [str(uv), "pip", "install", "--quiet", "-r", str(REPO_ROOT / "service" / "requirements.txt")],
    ):
        _checked(subprocess.run(command, env=env, capture_output=True, text=True), check=True)
    return venv / "bin" / "python"


@pytest.fixture(scope="session")
def served(store, serving_python, tmp_path_factory):
    """(RunningService: URL and process id, its TMPDIR) of the real BentoML server (REST API and
    demo) on a loopback port, run by the serving install (`serving_python`: no torch), started once
    for the whole run; TMPDIR is an empty directory of its own, so that the files it leaves there
    can be counted."""
    from servers import service_process

    home, tag = store
    tmpdir = tmp_path_factory.mktemp("server-tmp")
    env = {**SERVICE_ENV, "TMPDIR": str(tmpdir)}
    with service_process(tag, home, env=env, python=serving_python) as service:
        yield service, tmpdir


@pytest.fixture(scope="session")
def server(served) -> str:
    """Base URL of the session's server."""
    return served[0].url


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    from helpers import write_tone

    d = tmp_path_factory.mktemp("clips")
    seconds = float(SERVICE_ENV["SER_MAX_SECONDS"])
    return {
        "wav": write_tone(d / "mono16k.wav", seconds=1.5),
        "flac": write_tone(d / "stereo44k.flac", sr=44_100, channels=2, f0=220),
        "ogg": write_tone(d / "clip22k.ogg", sr=22_050, f0=140),
        "mp3": write_tone(d / "clip44k.mp3", fmt="MP3", sr=44_100, f0=260),
        "story": write_tone(d / "story.wav", seconds=9.3, f0=200),
        "long": write_tone(d / "long.wav", seconds=seconds + 2),
    }
