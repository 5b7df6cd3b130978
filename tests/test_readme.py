"""The README is the contract: its journeys' blocks run as written where they need no internet
(against the session's server, in a directory holding the files they name), it stays about one
screen per journey, and the docs keep each command in one place and research history on its own
page."""

from __future__ import annotations

import glob
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from conftest import REPO_ROOT, ser

from pipeline.data.synth import SAMPLING_RATE, make_speakers, synthesize_utterance

README = (REPO_ROOT / "README.md").read_text()
DOCS = [
    "README.md",
    *sorted(str(Path(p).relative_to(REPO_ROOT)) for p in glob.glob(f"{REPO_ROOT}/docs/*.md")),
]
COMMAND = re.compile(r"^(\.venv/bin/|curl |scripts/|NUM_PROCESSES|docker )")


def blocks(heading: str, language: str) -> list[str]:
    """The fenced `language` blocks under the README's `## heading`."""
    section = README.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


def commands(block: str) -> list[list[str]]:
    """A bash block's commands, continuation lines joined, comments dropped."""
    joined = block.replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in joined.splitlines() if line.split("#")[0].strip()]


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """A README command as written, `.venv/bin/` being this environment's."""
    if argv[0].startswith(".venv/bin/"):
        name = argv[0].removeprefix(".venv/bin/")
        argv = [sys.executable, "-m", "pipeline.cli", *argv[1:]] if name == "ser" else [name, *argv[1:]]
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, f"{shlex.join(argv)}:\n{done.stderr[-2000:]}"
    return done


@pytest.fixture
def workdir(tmp_path) -> Path:
    """A directory with the clip.wav and interview.wav the README's blocks name: synthetic speech."""
    rng = np.random.default_rng(0)
    speaker = make_speakers(1, seed=3)[0]
    utterances = [synthesize_utterance(speaker, emotion, rng) for emotion in ("happy", "sad", "angry")]
    pause = np.zeros(SAMPLING_RATE // 2, np.float32)
    sf.write(tmp_path / "clip.wav", utterances[0], SAMPLING_RATE, subtype="PCM_16")
    interview = np.concatenate([part for u in utterances for part in (pause, u)] + [pause])
    sf.write(tmp_path / "interview.wav", interview, SAMPLING_RATE, subtype="PCM_16")
    return tmp_path


@pytest.mark.fast
def test_the_readme_is_about_one_screen_per_journey():
    assert len(README.splitlines()) <= 200
    for heading in (
        "Try the demo",
        "Train on your own folder of labelled audio",
        "Call the REST API",
        "Stream live speech from Python",
        "Deploy a Bento",
        "A pretrained backbone (with internet)",
        "A one-hour recording",
        "Score a whole archive",
    ):
        assert f"\n## {heading}\n" in README, heading


@pytest.mark.fast
def test_history_stays_on_its_own_page_and_each_command_in_one_place():
    places: dict[str, set[str]] = {}
    for name in DOCS:
        text = (REPO_ROOT / name).read_text()
        if name != "docs/history.md":
            assert not re.search(r"issue [0-9]|not met", text), name
        for block in re.findall(r"```(?:bash)?\n(.*?)```", text, re.S):
            for line in block.replace("\\\n", " ").splitlines():
                command = line.split("  #")[0].strip()
                if COMMAND.match(command):
                    places.setdefault(command, set()).add(name)
    assert {c: sorted(p) for c, p in places.items() if len(p) > 1} == {}


def test_rest_blocks_run_as_written(server, workdir):
    for argv in commands(blocks("Call the REST API", "bash")[0]):
        answer = run([a.replace("http://localhost:3000", server) for a in argv], workdir).stdout
        assert '"label"' in answer and '"scores"' in answer, answer
    python = blocks("Call the REST API", "python")[0].replace("http://localhost:3000", server)
    done = subprocess.run([sys.executable, "-c", python], cwd=workdir, capture_output=True, text=True)
    assert done.returncode == 0 and len(done.stdout.split(" ", 1)[1]) > 10, done.stderr[-2000:]


def test_the_stream_block_runs_as_written(server, workdir):
    python = blocks("Stream live speech from Python", "python")[0]
    python = python.replace("ws://localhost:3000", server.replace("http://", "ws://"))
    done = subprocess.run([sys.executable, "-c", python], cwd=workdir, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert "'type': 'ready'" in lines[0] and lines[-1].startswith("summary: ") and len(lines) >= 4


def test_training_on_a_folder_the_one_hour_and_the_archive_blocks_run_as_written(corpus, workdir):
    """The folder journey on the session's demo corpus (a folder per label) as `my_clips`, one
    epoch (the written command trains 30 or more), then `ser predict --segments vad` and the
    archive command with its model (`calls/`: the corpus's happy clips)."""
    (workdir / "my_clips").symlink_to(corpus, target_is_directory=True)
    prepare, train, evaluate = commands(blocks("Train on your own folder of labelled audio", "bash")[0])
    run(prepare, workdir)
    run([*train, "--epochs", "1", "--report-to", "none"], workdir)
    assert "test" in run(evaluate, workdir).stdout
    (predict,) = commands(blocks("A one-hour recording", "bash")[0])
    checkpoint = predict.index("runs/demo/model/best")
    predict[checkpoint] = "runs/mine/model/best"
    run(predict, workdir)
    rows = (workdir / "timeline.csv").read_text().splitlines()
    assert rows[0].startswith("file,start,end,label,score") and len(rows) >= 2
    (workdir / "calls").symlink_to(corpus / "happy", target_is_directory=True)
    local = commands(blocks("Score a whole archive", "bash")[0])[0]
    local[local.index("runs/demo/model/best")] = "runs/mine/model/best"
    assert "files scored" in run(local, workdir).stdout
    table = pq.read_table(workdir / "scores").to_pylist()
    assert sorted(row["path"] for row in table) == sorted(p.name for p in (corpus / "happy").iterdir())
    assert all(row["error"] is None and row["label"] for row in table)


def test_ser_version_runs():
    assert ser("--version").stdout.startswith("ser ")
