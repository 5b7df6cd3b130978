"""Damaged uploads of every accepted format, made here from valid files: each truncated at every
byte offset in its first 256 bytes and at 20 random offsets after, and copies with random bytes of
their first 256 changed. The server answers each with a 4xx and a JSON error or a 200 with a valid
answer, never a 5xx; `ser predict` ends each with one line (exit code 2 and the error, or 0 and the
answer), never a traceback.

What this found: `ser predict`, which has no duration limit, read an MP3 whose damaged header
announced 1.6e12 frames in one piece (MemoryError, with its traceback), and printed libmpg123's notes
on damaged MP3 streams above its error line; a float WAV with a sample of 3e38 got a 200 with null
scores (tests/test_units_audio.py keeps one regression test of each).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import ser
from helpers import LABELS, post_audio, tone, wav_bytes

import pipeline.cli
from pipeline.inference.predictor import Predictor

# name, format, subtype, sampling rate, channels: half a second each
FORMATS = [
    ("pcm16.wav", "WAV", "PCM_16", 16_000, 1),
    ("pcm24.wav", "WAV", "PCM_24", 44_100, 2),
    ("float.wav", "WAV", "FLOAT", 22_050, 1),
    ("mono.flac", "FLAC", "PCM_16", 48_000, 1),
    ("stereo.flac", "FLAC", "PCM_24", 16_000, 2),
    ("mono.ogg", "OGG", "VORBIS", 22_050, 1),
    ("stereo.ogg", "OGG", "VORBIS", 44_100, 2),
    ("mono.mp3", "MP3", "MPEG_LAYER_III", 16_000, 1),
    ("stereo.mp3", "MP3", "MPEG_LAYER_III", 44_100, 2),
]
HEAD = 256  # bytes: every cut inside them, and the changed bytes
LATER_CUTS = 20
CHANGED_COPIES = 30


def _valid(fmt: str, subtype: str, sr: int, channels: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, tone(0.5, sr=sr, channels=channels), sr, format=fmt, subtype=subtype)
    return buffer.getvalue()


def _damaged(data: bytes, rng: np.random.Generator) -> list[tuple[str, bytes]]:
    cuts = [*range(HEAD), *sorted(rng.integers(HEAD, len(data), LATER_CUTS))]
    copies = []
    for i in range(CHANGED_COPIES):
        copy = bytearray(data)
        for at in rng.integers(0, HEAD, rng.integers(1, 9)):
            copy[at] = rng.choice([0, 255, int(rng.integers(256)), copy[at] ^ 1 << int(rng.integers(8))])
        copies.append((f"changed-{i}", bytes(copy)))
    return [(f"cut-at-{n}", data[:n]) for n in cuts] + copies


@pytest.fixture(scope="module")
def damaged() -> list[tuple[str, str, bytes]]:
    """(file name, what was done, bytes) of every damaged upload, the same in every run."""
    rng = np.random.default_rng(16)
    return [(name, how, content) for name, *spec in FORMATS for how, content in _damaged(_valid(*spec), rng)]


def answer_problem(body: dict) -> str | None:
    """What is wrong with a classification answer (None: nothing)."""
    scores = body.get("scores")
    if body.get("label") not in LABELS or not isinstance(scores, dict) or set(scores) != set(LABELS):
        return f"not an answer: {body}"
    values = list(scores.values())
    if not all(isinstance(v, float) and 0 <= v <= 1 for v in values) or not math.isclose(
        sum(values), 1, abs_tol=1e-4
    ):
        return f"scores are not probabilities: {scores}"
    if body.get("score") != max(values) or not body.get("duration_s", 0) > 0:
        return f"inconsistent answer: {body}"
    return None


def response_problem(response: httpx.Response) -> str | None:
    """What is wrong with the server's answer to a damaged upload (None: nothing)."""
    if response.status_code == 200:
        return answer_problem(response.json())
    if not 400 <= response.status_code < 500:
        return f"{response.status_code}: {response.text[:200]}"
    is_json = response.headers.get("content-type", "").startswith("application/json")
    error = response.json().get("error") if is_json else None
    return None if isinstance(error, str) and error.strip() else f"not a JSON error: {response.text[:200]}"


def test_no_damaged_upload_gets_a_5xx(server, damaged):
    assert len(damaged) == len(FORMATS) * (HEAD + LATER_CUTS + CHANGED_COPIES)
    with httpx.Client(timeout=60) as client:

        def send(case: tuple[str, str, bytes]) -> str | None:
            name, how, content = case
            response = client.post(f"{server}/classify", files={"audio": (name, content)})
            problem = response_problem(response)
            return problem and f"{name} {how}: {problem}"

        with ThreadPoolExecutor(4) as pool:
            problems = [p for p in pool.map(send, damaged) if p]
    assert problems == [], f"{len(problems)} bad answers, the first: {problems[:5]}"
    good = post_audio(server, "clip.wav", wav_bytes(0.5))
    assert good.status_code == 200 and answer_problem(good.json()) is None


def ended_in_one_line(code: int, out: str, err: str) -> str | None:
    """What is wrong with how `ser predict FILE` ended (None: nothing)."""
    if code == 2 and out == "" and err.startswith("ser predict: error: ") and err.count("\n") == 1:
        return None
    if code == 0 and err == "" and out.count("\n") == 1:
        return answer_problem(json.loads(out))
    return f"exit {code}, stdout {out[:200]!r}, stderr {err[-300:]!r}"


@pytest.fixture
def one_thread():
    """torch on one thread: the tiny model's forward took 3 ms on one, 350 ms on two of a busy
    2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_ser_predict_ends_every_damaged_file_in_one_line(
    service_checkpoint, damaged, tmp_path, monkeypatch, capfd, one_thread
):
    """Every damaged file through the console command's own `main()` in this process (its parser
    built and its model loaded once: a new interpreter costs about 10 s)."""
    predictor = Predictor.from_pretrained(service_checkpoint, precision="auto")
    parser = pipeline.cli.build_parser()
    monkeypatch.setattr(Predictor, "from_pretrained", lambda *args, **kwargs: predictor)
    monkeypatch.setattr(pipeline.cli, "build_parser", lambda: parser)
    capfd.readouterr()
    problems = []
    for name, how, content in damaged:
        path = tmp_path / name
        path.write_bytes(content)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = pipeline.cli.main(["predict", "--checkpoint", str(service_checkpoint), str(path)])
        problem = ended_in_one_line(code, out.getvalue(), err.getvalue())
        if problem:
            problems.append(f"{name} {how}: {problem}")
    assert problems == [], f"{len(problems)} bad endings, the first: {problems[:5]}"
    assert capfd.readouterr().err == ""  # nothing written past sys.stderr, e.g. by libmpg123


def test_the_console_command_ends_damaged_files_in_one_line(service_checkpoint, damaged, tmp_path):
    """The real `ser predict`, on an MP3 cut inside its first frame (libmpg123 prints notes about
    it on file descriptor 2) and a float WAV cut inside its header, in parallel."""
    chosen = {("mono.mp3", "cut-at-200"), ("float.wav", "cut-at-40")}
    paths = []
    for name, how, content in damaged:
        if (name, how) in chosen:
            paths.append(tmp_path / f"{how}-{name}")
            paths[-1].write_bytes(content)
    assert len(paths) == 2
    with ThreadPoolExecutor(2) as pool:
        runs = list(
            pool.map(
                lambda p: ser("predict", "--checkpoint", str(service_checkpoint), str(p), check=False), paths
            )
        )
    for path, done in zip(paths, runs):
        assert done.returncode == 2 and done.stdout == "", done
        assert done.stderr.startswith(f"ser predict: error: {path}: ") and done.stderr.count("\n") == 1, (
            done.stderr
        )
