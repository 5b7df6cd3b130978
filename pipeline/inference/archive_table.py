"""The output of archive scoring: a directory of shards (Parquet files, or JSON lines), each holding
the rows of whole files, written under a temporary name and renamed into place: a shard is there
complete or not at all, so a job killed at any moment and started again skips exactly the files
the shards hold. `_run.json` records the model and the options once (Parquet readers skip names
that start with `_` or `.`); a run with other ones is refused there.

One row per file (its answer), or per speech segment with a timeline (with its file's emotion:
`file_label`, `file_score`); a file that could not be scored has one row with its `error` and no
answer. A manifest's columns are carried, a column named
like one of the answer's as `manifest_<name>`.
"""

from __future__ import annotations

import io
import json
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from ..errors import SerError
from ..files import write_file_atomic
from .archive import PATH_COLUMN, ArchiveFile

RUN_FILE = "_run.json"
LOCK_FILE = ".lock"
SHARD_SECONDS = 60.0  # a shard is written at least this often: a kill loses at most this much work
COMPARED = ("model", "options", "format")  # what a run that goes on must share with the first


def answer_schema(labels: list[str], timeline: bool) -> list[tuple[str, pa.DataType]]:
    """The answer's columns: a file's, or with a timeline a segment's and its file's emotion."""
    scores = pa.struct([(label, pa.float64()) for label in labels])
    segment = [("segment", pa.int32()), ("start", pa.float64()), ("end", pa.float64())]
    of_file = [("file_label", pa.string()), ("file_score", pa.float64())]
    answer = [("duration_s", pa.float64()), ("label", pa.string()), ("score", pa.float64())]
    columns = [*answer, ("scores", scores), ("error", pa.string())]
    return [*segment, *columns[:1], *of_file, *columns[1:]] if timeline else columns


def carried_schema(files: list[ArchiveFile], taken: set[str]) -> tuple[dict[str, str], pa.Schema]:
    """({manifest column: its output name}, the output types) of the columns a manifest carries."""
    try:
        schema = pa.Table.from_pylist([f.columns for f in files]).schema
    except (pa.ArrowException, TypeError) as err:
        raise SerError(f"the manifest's columns cannot make a table: {err}") from None
    names = {name: f"manifest_{name}" if name in taken else name for name in schema.names}
    fields = [pa.field(names[f.name], pa.string() if pa.types.is_null(f.type) else f.type) for f in schema]
    return names, pa.schema(fields)


def rows_of(file: ArchiveFile, answer: dict, names: dict[str, str]) -> list[dict[str, Any]]:
    """The rows of one file's answer (`ser predict`'s, or {"error": ...})."""
    row = {PATH_COLUMN: file.key, **{names[k]: v for k, v in file.columns.items()}}
    if "error" in answer:
        return [{**row, "error": answer["error"]}]
    if "segments" not in answer:
        return [{**row, **answer}]
    of_file = {
        "duration_s": answer["duration_s"],
        "file_label": answer["label"],
        "file_score": answer["score"],
    }
    return [{**row, "segment": i, **segment, **of_file} for i, segment in enumerate(answer["segments"])]


def _change(key: str, there: Any, here: Any) -> str:
    """What differs between a value in `_run.json` and this run's, in words."""
    if not (isinstance(there, dict) and isinstance(here, dict)):
        there, here = {key: there}, {key: here}
    names = sorted(name for name in {*there, *here} if there.get(name) != here.get(name))
    return ", ".join(f"{n} {json.dumps(there.get(n))} there, {json.dumps(here.get(n))} here" for n in names)


class ArchiveTable:
    """The output directory of one archive job: the keys already there (`done`), rows added a file
    at a time, a shard written every `shard_files` files or `SHARD_SECONDS`."""

    def __init__(
        self, directory: str | Path, run: dict, timeline: bool, files: list[ArchiveFile], shard_files: int
    ):
        self.dir, self.fmt, self.shard_files = Path(directory), run["format"], shard_files
        answer = answer_schema(run["model"]["labels"], timeline)
        self.names, carried = carried_schema(files, {PATH_COLUMN, *(name for name, _ in answer)})
        self.schema = pa.schema([(PATH_COLUMN, pa.string()), *carried, *answer])
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise SerError(f"cannot write to {self.dir}: {err.strerror}") from None
        self.lock = FileLock(self.dir / LOCK_FILE)
        try:
            self.lock.acquire(timeout=0)
        except Timeout:
            raise SerError(f"{self.dir}: another job is writing there") from None
        for leftover in self.dir.glob(".part-*.tmp"):  # a shard a kill interrupted
            leftover.unlink()
        self._check_run(run)
        self.done = self._keys()
        self.rows: list[dict] = []
        self.buffered, self.since = 0, time.monotonic()
        self.next_shard = 1 + max((int(p.stem.split("-")[1]) for p in self.shards()), default=0)

    def _check_run(self, run: dict) -> None:
        path = self.dir / RUN_FILE
        if path.is_file():
            first = json.loads(path.read_text())
            changed = [
                _change(key, first.get(key), run[key]) for key in COMPARED if first.get(key) != run[key]
            ]
            if changed:
                raise SerError(
                    f"{self.dir} holds scores made otherwise ({'; '.join(changed)}): "
                    "run the same command there, or choose another --output-dir"
                )
            return
        if any(not p.name.startswith(".") for p in self.dir.iterdir()):
            raise SerError(f"{self.dir} is not empty and holds no {RUN_FILE}: choose another --output-dir")
        write_file_atomic(path, json.dumps({**run, "ser": version("ser-toolkit")}, indent=2) + "\n")

    def shards(self) -> list[Path]:
        return sorted(self.dir.glob(f"part-*.{self.fmt}"))

    def _keys(self) -> set[str]:
        keys: set[str] = set()
        for shard in self.shards():
            if self.fmt == "parquet":
                keys.update(pq.read_table(shard, columns=[PATH_COLUMN]).column(0).to_pylist())
            else:
                keys.update(json.loads(line)[PATH_COLUMN] for line in shard.read_text().splitlines())
        return keys

    def add(self, file: ArchiveFile, answer: dict) -> None:
        self.rows.extend(rows_of(file, answer, self.names))
        self.buffered += 1
        if self.buffered >= self.shard_files or time.monotonic() - self.since >= SHARD_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            table = pa.Table.from_pylist(self.rows, self.schema)
            if self.fmt == "parquet":
                sink = io.BytesIO()
                pq.write_table(table, sink)
                data = sink.getvalue()
            else:
                data = "".join(json.dumps(row) + "\n" for row in table.to_pylist())
            write_file_atomic(self.dir / f"part-{self.next_shard:06d}.{self.fmt}", data)
            self.next_shard += 1
        self.rows, self.buffered, self.since = [], 0, time.monotonic()

    def close(self) -> None:
        """Writes what is buffered and lets another job in."""
        try:
            self.flush()
        finally:
            self.lock.release()
