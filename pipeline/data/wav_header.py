"""WAV uploads whose header does not match the file: refused before decoding.

libsndfile decodes what it can of such a file (a data chunk longer than the file is cut to the
file), so a truncated upload would be classified as if it were whole. Here the RIFF chunks must
tile the file exactly, and the length the header announces is held to the duration limit.
"""

from __future__ import annotations

import struct
from pathlib import Path

from ..errors import AudioError, LimitError, seconds_past
from .audio import check_format

RIFF_HEADER = struct.Struct("<4sI4s")
CHUNK_HEADER = struct.Struct("<4sI")
FMT = struct.Struct("<HHIIH")  # format tag, channels, sample rate, bytes per second, block align
MAX_CHUNKS = 1000  # a real file has a handful
UNKNOWN_SIZE = 0xFFFFFFFF  # what streaming writers (e.g. ffmpeg to a pipe) put in a size they cannot know


def _is_fourcc(chunk_id: bytes) -> bool:
    return all(32 <= byte < 127 for byte in chunk_id)


def check_wav(path: str | Path, max_seconds: float | None = None, name: str = "upload") -> None:
    """Raise AudioError when `path`, a RIFF/WAVE file, is truncated or has stray bytes, LimitError when
    its header announces more than `max_seconds` of audio, a sampling rate or channel count out of
    range. Files of other formats pass."""
    size = Path(path).stat().st_size
    with open(path, "rb") as f:
        head = f.read(RIFF_HEADER.size)
        if len(head) < RIFF_HEADER.size or head[:4] != b"RIFF" or head[8:] != b"WAVE":
            return
        block_align = rate = 0
        position = RIFF_HEADER.size
        for _ in range(MAX_CHUNKS + 1):
            if position + CHUNK_HEADER.size > size:
                break
            f.seek(position)
            chunk_id, chunk_size = CHUNK_HEADER.unpack(f.read(CHUNK_HEADER.size))
            if not _is_fourcc(chunk_id):
                raise AudioError(
                    f"{name}: corrupt WAV file: the bytes at offset {position} are not a chunk "
                    "(does a chunk announce fewer bytes than it holds?)"
                )
            body = size - position - CHUNK_HEADER.size
            if chunk_id == b"fmt " and FMT.size <= chunk_size <= body:
                _, channels, rate, _, block_align = FMT.unpack(f.read(FMT.size))
                check_format(name, rate, channels)
            if chunk_id == b"data":
                if chunk_size == UNKNOWN_SIZE:
                    return  # a streamed file: its data runs to the end
                seconds = chunk_size / block_align / rate if block_align and rate else 0.0
                if max_seconds is not None and seconds > max_seconds:
                    raise LimitError(
                        f"{name}: audio is {seconds_past(seconds, 1, up=True)} s long, "
                        f"the limit is {max_seconds:g} s"
                    )
            if chunk_size > body:
                raise AudioError(
                    f"{name}: truncated WAV file: its {chunk_id.decode()!r} chunk announces {chunk_size} "
                    f"bytes, {body} follow"
                )
            position += CHUNK_HEADER.size + chunk_size + (chunk_size & 1)
        else:
            raise AudioError(f"{name}: corrupt WAV file: more than {MAX_CHUNKS} chunks")
    if position < size:
        raise AudioError(
            f"{name}: truncated or corrupt WAV file: its last {size - position} bytes are not a chunk"
        )
    _, riff_size, _ = RIFF_HEADER.unpack(head)
    if riff_size != UNKNOWN_SIZE and riff_size + 8 not in (size, size + 1):  # + 1: a missing pad byte
        raise AudioError(
            f"{name}: corrupt WAV file: its header announces {riff_size + 8} bytes, it has {size}"
        )
