"""The inputs of archive scoring: a folder's audio files, recursively, or the files a manifest
lists with its other columns (pure logic, files made here)."""

from __future__ import annotations

import json
import re

import pytest

from pipeline.errors import SerError
from pipeline.inference.archive import archive_files

pytestmark = pytest.mark.fast


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_a_folder_gives_its_audio_files_recursively_in_order(tmp_path):
    for name in ["b/2.WAV", "a/1.flac", "a/deep/3.mp3", "c.ogg", "notes.txt", ".hidden/4.wav", "a/.5.wav"]:
        touch(tmp_path / name)
    files = archive_files(tmp_path)
    assert [f.key for f in files] == ["a/1.flac", "a/deep/3.mp3", "b/2.WAV", "c.ogg"]
    assert all(f.path == tmp_path / f.key and f.columns == {} for f in files)


def test_a_csv_manifest_carries_its_other_columns(tmp_path):
    touch(tmp_path / "calls" / "x.wav")
    manifest = tmp_path / "calls.csv"
    manifest.write_text("path,agent,duration\ncalls/x.wav,ann,12.5\n/abs/y.mp3,bob,3\n")
    first, second = archive_files(manifest)
    assert (first.key, first.path, first.columns) == (
        "calls/x.wav",
        tmp_path / "calls/x.wav",
        {"agent": "ann", "duration": "12.5"},
    )
    assert (second.key, str(second.path)) == ("/abs/y.mp3", "/abs/y.mp3")  # absolute paths stay


def test_a_jsonl_manifest_keeps_its_types(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"path": "a.wav", "speaker": 7, "tags": ["x"]}) + "\n\n")
    (only,) = archive_files(manifest)
    assert only.columns == {"speaker": 7, "tags": ["x"]}


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("m.csv", "file,agent\na.wav,ann\n", "m.csv, row 1: no 'path' (its columns: file, agent)"),
        ("m.csv", "path\na.wav\na.wav\n", "a.wav is listed more than once"),
        ("m.jsonl", '{"path": "a.wav"}\nnot json\n', "m.jsonl, line 2: not JSON"),
        ("m.jsonl", "[1, 2]\n", "m.jsonl, line 1: not a JSON object"),
        ("m.csv", "path\n", "no audio files"),
        ("m.txt", "a.wav\n", "a manifest is a .csv or .jsonl file"),
    ],
)
def test_a_bad_manifest_is_one_clear_error(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(SerError, match=re.escape(message)):
        archive_files(tmp_path / name)


def test_a_missing_source_or_an_empty_folder_is_refused(tmp_path):
    with pytest.raises(SerError, match="no folder or manifest at"):
        archive_files(tmp_path / "nowhere")
    touch(tmp_path / "empty" / "readme.txt")
    with pytest.raises(SerError, match=r"no audio files \(\.wav, \.flac, \.ogg, \.mp3\)"):
        archive_files(tmp_path / "empty")
