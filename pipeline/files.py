"""Writes that readers never see half done: files and directories are written under a temporary
sibling name (`.NAME.tmp`), fsynced, then renamed into place.

Replacing an existing directory takes two renames (the old one aside to `.NAME.old`, the new one in);
a crash between them leaves the old one there, and `recover_dir` (run before every write) puts it back.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temp_sibling(target: Path, kind: str = "tmp") -> Path:
    """`.NAME.tmp` (being written), `.NAME.old` (being replaced) or `.NAME.del` (being deleted)."""
    target = Path(target)
    return target.with_name(f".{target.name}.{kind}")


def _fsync(path: Path) -> None:
    """Flushes a file, or a directory's entries (where the file system allows it), to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        if not os.path.isdir(path):  # some file systems cannot fsync a directory: nothing to do there
            raise
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """Flushes every file under `root`, then the directories (deepest first), to the disk."""
    dirs = []
    for folder, _, files in os.walk(root):
        dirs.append(folder)
        for name in files:
            _fsync(Path(folder, name))
    for folder in reversed(dirs):
        _fsync(Path(folder))


def recover_dir(target: Path) -> None:
    """Repairs what a crash in the middle of replacing `target` left: if `target` is gone but its
    previous version (`.NAME.old`, complete) is there, it is put back; leftover temporary, old and
    half-deleted siblings are removed."""
    target = Path(target)
    old = temp_sibling(target, "old")
    if old.is_dir() and not target.exists():
        os.rename(old, target)
    for kind in ("old", "tmp", "del"):
        shutil.rmtree(temp_sibling(target, kind), ignore_errors=True)


def fresh_temp_dir(target: Path) -> Path:
    """An empty `.NAME.tmp` beside `target` (after repairing what an earlier crash left)."""
    recover_dir(target)
    tmp = temp_sibling(target)
    tmp.mkdir(parents=True)
    return tmp


def publish_dir(tmp: Path, target: Path) -> None:
    """Makes the fully written directory `tmp` the new `target`: fsync, then rename(s)."""
    tmp, target = Path(tmp), Path(target)
    _fsync_tree(tmp)
    old = temp_sibling(target, "old")
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.rename(target, old)
    os.rename(tmp, target)
    _fsync(target.parent)
    shutil.rmtree(old, ignore_errors=True)


def remove_dir(target: Path) -> None:
    """Deletes `target` so that no reader ever sees it half deleted: renamed aside first."""
    gone = temp_sibling(target, "del")
    shutil.rmtree(gone, ignore_errors=True)
    os.rename(target, gone)
    shutil.rmtree(gone, ignore_errors=True)


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yields an empty temporary directory that replaces `target` once the block has finished (and is
    discarded if the block raises)."""
    target = Path(target)
    tmp = fresh_temp_dir(target)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish_dir(tmp, target)


def write_file_atomic(path: Path, data: bytes | str) -> None:
    """Writes a file through a temporary name, so readers see the old or the new content, never half."""
    path = Path(path)
    tmp = temp_sibling(path)
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync(path.parent)
