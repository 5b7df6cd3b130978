"""Archive scoring's pure logic: its inputs (a folder's audio files, recursively, or the files a
manifest lists with its other columns), its output table (shards of whole files, what a new run
skips, one writer, one run's settings) and its workers' devices. Files made here; the jobs
themselves: test_archive_job.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.errors import SerError
from pipeline.inference.archive import ArchiveFile, archive_files
from pipeline.inference.archive_table import ArchiveTable
from pipeline.inference.archive_workers import worker_devices

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


# The output table (pipeline/inference/archive_table.py) and the workers' devices.

LABELS = ["angry", "happy", "sad"]
WHOLE = {"label": "sad", "score": 0.7, "scores": {"angry": 0.1, "happy": 0.2, "sad": 0.7}, "duration_s": 2.0}


def run_record(fmt="parquet", top_k=None):
    return {
        "model": {"weights_sha256": "ab", "labels": LABELS},
        "options": {"top_k": top_k, "segments": None},
        "format": fmt,
        "source": "x",
    }


def files_of(*keys, **columns):
    return [ArchiveFile(key, Path(key), dict(columns)) for key in keys]


def read(directory, fmt="parquet"):
    if fmt == "parquet":
        return pq.read_table(directory).to_pylist()
    return [
        json.loads(line)
        for p in sorted(directory.glob("part-*.jsonl"))
        for line in p.read_text().splitlines()
    ]


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_shards_hold_whole_files_and_a_new_table_skips_them(tmp_path, fmt):
    files = files_of("a.wav", "b.wav", "c.wav")
    table = ArchiveTable(tmp_path, run_record(fmt), False, files, shard_files=2)
    assert table.done == set()
    table.add(files[0], WHOLE)
    assert table.shards() == []  # one file buffered
    table.add(files[1], {"error": "b.wav: not a readable audio file"})
    assert [p.name for p in table.shards()] == [f"part-000001.{fmt}"]
    table.close()
    rows = read(tmp_path, fmt)
    assert rows[0] == {"path": "a.wav", **WHOLE, "error": None}
    assert rows[1]["error"] == "b.wav: not a readable audio file" and rows[1]["label"] is None
    again = ArchiveTable(tmp_path, run_record(fmt), False, files, shard_files=2)
    assert again.done == {"a.wav", "b.wav"}
    again.add(files[2], WHOLE)
    again.close()
    assert [p.name for p in again.shards()] == [f"part-000001.{fmt}", f"part-000002.{fmt}"]
    assert [row["path"] for row in read(tmp_path, fmt)] == ["a.wav", "b.wav", "c.wav"]


def test_a_timeline_is_a_row_per_segment_and_manifest_columns_are_carried(tmp_path):
    files = files_of("a.wav", speaker="ann", label="happy")  # `label` names an answer column
    segment = {"label": "sad", "score": 0.5, "scores": {"sad": 0.5}}  # top_k 1: one score
    answer = {
        **WHOLE,
        "segments": [{"start": 0.0, "end": 1.0, **segment}, {"start": 1.5, "end": 2.0, **segment}],
    }
    table = ArchiveTable(tmp_path, run_record(top_k=1), True, files, shard_files=10)
    table.add(files[0], answer)
    table.close()
    first, second = read(tmp_path)
    assert first == {
        "path": "a.wav",
        "speaker": "ann",
        "manifest_label": "happy",
        "segment": 0,
        "start": 0.0,
        "end": 1.0,
        "duration_s": 2.0,
        "file_label": "sad",
        "file_score": 0.7,
        "label": "sad",
        "score": 0.5,
        "scores": {"angry": None, "happy": None, "sad": 0.5},
        "error": None,
    }
    assert (second["segment"], second["start"]) == (1, 1.5)


def test_a_shard_a_kill_interrupted_is_not_read_and_is_cleared(tmp_path):
    files = files_of("a.wav")
    ArchiveTable(tmp_path, run_record(), False, files, 10).close()
    (tmp_path / ".part-000001.parquet.tmp").write_bytes(b"half a shard")
    table = ArchiveTable(tmp_path, run_record(), False, files, 10)
    assert table.done == set() and not list(tmp_path.glob(".part-*"))
    table.close()


def test_one_writer_at_a_time_and_only_the_same_run(tmp_path):
    files = files_of("a.wav")
    first = ArchiveTable(tmp_path, run_record(), False, files, 10)
    with pytest.raises(SerError, match="another job is writing there"):
        ArchiveTable(tmp_path, run_record(), False, files, 10)
    first.close()
    with pytest.raises(SerError, match=re.escape("top_k null there, 2 here")):
        ArchiveTable(tmp_path, run_record(top_k=2), False, files, 10)
    with pytest.raises(SerError, match=re.escape('format "parquet" there, "jsonl" here')):
        ArchiveTable(tmp_path, run_record("jsonl"), False, files, 10)
    ArchiveTable(tmp_path, {**run_record(), "source": "moved"}, False, files, 10).close()  # not compared


def test_a_folder_of_other_files_is_not_written_into(tmp_path):
    (tmp_path / "thesis.tex").write_text("")
    with pytest.raises(SerError, match="is not empty and holds no _run.json"):
        ArchiveTable(tmp_path, run_record(), False, files_of("a.wav"), 10)


@pytest.mark.parametrize(
    "device, workers, gpus, expected",
    [
        ("auto", None, 0, ["cpu"]),
        ("auto", 2, 0, ["cpu", "cpu"]),
        ("auto", None, 2, ["cuda:0", "cuda:1"]),
        ("cuda", 3, 2, ["cuda:0", "cuda:1", "cuda:0"]),
        ("cpu", 2, 4, ["cpu", "cpu"]),
        ("cuda:1", None, 2, ["cuda:1"]),
    ],
)
def test_one_worker_per_gpu_by_default(device, workers, gpus, expected):
    assert worker_devices(device, workers, gpus) == expected


def test_cuda_without_a_gpu_is_refused():
    with pytest.raises(SerError, match="torch sees no GPU"):
        worker_devices("cuda", None, 0)
