"""Archive scoring end to end (`ser predict --output-dir`): every file of a generated archive exactly
once with the answer `ser predict` gives it alone, the same table after SIGKILLs at random moments
and a final run, and the same rows from a local Ray instance as from one process."""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
from archives import make_archive
from conftest import REPO_ROOT, ser

from pipeline.fusion import HEAD_CONFIG, HEAD_WEIGHTS
from pipeline.inference.onnx_export import export_onnx
from pipeline.inference.onnx_model import ONNX_DIR


@pytest.fixture(scope="module")
def model(trained) -> str:
    """The default recipe's checkpoint: its network and its functionals head (openSMILE)."""
    return str(trained / "best")


@pytest.fixture(scope="module")
def network_only(trained, tmp_path_factory) -> str:
    """The checkpoint without its functionals head, with its ONNX models (as `ser export` leaves a
    checkpoint): the serving install's path, ten times faster than the default recipe's."""
    out = tmp_path_factory.mktemp("network-only") / "best"
    shutil.copytree(trained / "best", out, ignore=shutil.ignore_patterns(HEAD_CONFIG, HEAD_WEIGHTS))
    export_onnx(out, out / ONNX_DIR)
    return str(out)


def table(directory: Path) -> list[dict]:
    """The rows of an output table, in (path, segment) order."""
    rows = pq.read_table(directory).to_pylist()
    return sorted(rows, key=lambda row: (row["path"], row.get("segment") or 0))


def assert_same_rows(rows: list[dict], expected: list[dict], tolerance: float) -> None:
    assert [(r["path"], r.get("segment"), r["label"], r["error"]) for r in rows] == [
        (r["path"], r.get("segment"), r["label"], r["error"]) for r in expected
    ]
    for row, other in zip(rows, expected):
        for name in ("start", "end", "duration_s"):
            assert row.get(name) == other.get(name), (row, other)
        if row["scores"] is not None:
            assert row["scores"] == pytest.approx(other["scores"], abs=tolerance), (row, other)


@pytest.mark.slow
def test_every_file_of_an_archive_once_with_the_answer_it_gets_alone(tmp_path, network_only, ser_here):
    archive = make_archive(tmp_path / "archive", clips=2000, recordings=10, minutes=10, broken=2)
    out = tmp_path / "scores"
    done = ser(
        "predict", "--checkpoint", network_only, "--segments", "vad", "--workers", "2",
        "--output-dir", str(out), str(archive.manifest),
    )  # fmt: skip
    assert "2012 files scored" in done.stdout and "2 could not be scored" in done.stdout, done.stdout
    rows = defaultdict(list)
    for row in table(out):
        rows[row["path"]].append(row)
    manifest = {row["path"]: row for row in _csv(archive.manifest)}
    assert sorted(rows) == sorted(manifest)  # every file, none twice (segments below)
    for path, file_rows in rows.items():
        assert [r["segment"] for r in file_rows] in ([None], list(range(len(file_rows))))
        assert all(
            (r["speaker"], r["channel"]) == (manifest[path]["speaker"], manifest[path]["channel"])
            for r in file_rows
        )
    broken = {p.relative_to(archive.root).as_posix() for p in archive.broken}
    for path in broken:
        (row,) = rows[path]
        assert row["label"] is None and (
            "not a readable audio file" in row["error"] or "empty file" in row["error"]
        )
    good = [p for p in archive.files if p.relative_to(archive.root).as_posix() not in broken]
    alone = ser_here("predict", "--checkpoint", network_only, "--segments", "vad", *map(str, good))
    answers = [json.loads(line) for line in alone.stdout.splitlines()]
    assert len(answers) == len(good)
    for answer in answers:
        file_rows = rows[Path(answer["file"]).relative_to(archive.root).as_posix()]
        assert all(r["error"] is None and r["duration_s"] == answer["duration_s"] for r in file_rows)
        assert all(r["file_score"] == pytest.approx(answer["score"], abs=1e-4) for r in file_rows)
        assert len(file_rows) == len(answer["segments"])
        for row, segment in zip(file_rows, answer["segments"]):
            assert (row["start"], row["end"]) == (segment["start"], segment["end"])
            assert row["scores"] == pytest.approx(segment["scores"], abs=1e-4)


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _ctrl_c_as_a_terminal_has_it() -> None:
    """SIGINT back to its default in the job: a suite started in the background (`make test &`)
    passes it on ignored, and Python then never turns it into KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _shards(directory: Path) -> int:
    return len(list(directory.glob("part-*.parquet")))


@pytest.mark.slow
def test_killed_three_times_and_interrupted_then_run_again_it_writes_what_one_run_writes(
    tmp_path, network_only
):
    archive = make_archive(tmp_path / "archive", clips=300, recordings=2, minutes=2, broken=2, seed=3)
    job = [
        "predict",
        "--checkpoint",
        network_only,
        "--segments",
        "vad",
        "--workers",
        "2",
        "--shard-files",
        "4",
    ]
    ser(*job, "--output-dir", str(tmp_path / "once"), str(archive.root))
    expected, total = table(tmp_path / "once"), _shards(tmp_path / "once")
    out, seed = tmp_path / "resumed", random.SystemRandom().randrange(2**32)  # not the suite's seeded one
    rng = random.Random(seed)
    command = [sys.executable, "-m", "pipeline.cli", *job, "--output-dir", str(out), str(archive.root)]
    # Ctrl-C (SIGINT to the process group, as a terminal sends it), then SIGKILL three times, each
    # once a random number of further shards is there and a random time after; 16 shards (a second
    # of work or more) always left, so that a loaded machine's late look still stops a running job
    for stop in (signal.SIGINT, signal.SIGKILL, signal.SIGKILL, signal.SIGKILL):
        proc = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_ctrl_c_as_a_terminal_has_it,
        )
        have = _shards(out)
        target = rng.randint(have + 1, max(have + 1, min(have + (total - have) // 6, total - 16)))
        while _shards(out) < target and proc.poll() is None:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.05))  # a shard is written every 0.05 s or so
        workers = psutil.Process(proc.pid).children(recursive=True)
        if stop == signal.SIGKILL:
            proc.send_signal(stop)
        else:
            os.killpg(proc.pid, stop)
        expected_code = -signal.SIGKILL if stop == signal.SIGKILL else 130
        where = f"seed {seed}, {have} shards before, target {target} of {total}"
        assert proc.wait(timeout=30) == expected_code, f"the job ended before it was stopped ({where})"
        _, alive = psutil.wait_procs(workers, timeout=15)
        assert alive == [], "a stopped job's workers outlive it"
    assert 0 < _shards(out) < total, seed
    ser(*job, "--output-dir", str(out), str(archive.root))
    assert_same_rows(table(out), expected, tolerance=1e-6)
    again = ser(*job, "--output-dir", str(out), str(archive.root))
    assert again.stdout.startswith(f"all {len(archive.files)} files are in")


def test_ray_writes_the_rows_one_process_writes(tmp_path, model):
    archive = make_archive(tmp_path / "archive", clips=40, recordings=1, minutes=2, broken=2, seed=5)
    job = ["predict", "--checkpoint", model, "--segments", "vad"]
    ser(*job, "--output-dir", str(tmp_path / "one"), str(archive.manifest))
    done = ser(
        *job,
        "--engine",
        "ray",
        "--workers",
        "2",
        "--output-dir",
        str(tmp_path / "ray"),
        str(archive.manifest),
    )
    assert "43 files scored" in done.stdout, done.stdout
    assert_same_rows(table(tmp_path / "ray"), table(tmp_path / "one"), tolerance=1e-5)
