"""Process settings for inference, by backend: how glibc keeps freed memory (kept for torch's large,
repeated tensors: no page faults; given back for ONNX Runtime, whose arena already keeps the
model's, so resident memory follows what is in use), and numpy's BLAS threads."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
RETAINED_BYTES = 2**30
MAPPED_BYTES = 2**20
TRIMMED_BYTES = 2**18


def _mallopt(*settings: tuple[int, int]) -> bool:
    """Apply glibc `mallopt` settings; False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return all(mallopt(option, value) for option, value in settings)


@functools.cache
def retain_freed_memory() -> bool:
    """Serve allocations up to 1 GiB from the heap and keep up to 1 GiB of it after `free`.

    By default glibc maps every block over 32 MB afresh and returns it on `free` (and a thread's own
    arena cannot hold blocks over 64 MB at all), so each forward pass over a batch of clips faults in
    and zeroes its activations again: about a quarter of the time of a wav2vec2-base batch of 16
    3-s clips on 2 cores. One arena for all threads; call it before the threads that run the model
    start. Returns False where the C library is not glibc.
    """
    return _mallopt((M_ARENA_MAX, 1), (M_MMAP_THRESHOLD, RETAINED_BYTES), (M_TRIM_THRESHOLD, RETAINED_BYTES))


def settle_process(backend: str) -> None:
    """The settings that suit inference on `backend` (a server's or `ser predict`'s process): torch
    keeps freed memory; ONNX Runtime gives it back, and numpy's BLAS runs on one thread (the front
    end's matrices are small, and BLAS threads waiting for work took the cores from ONNX Runtime's:
    the small model served 1.22x the requests per second with one)."""
    if backend == "torch":
        retain_freed_memory()
        return
    release_freed_memory()
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")


@functools.cache
def release_freed_memory() -> bool:
    """Map every block over 1 MiB on its own and unmap it on `free`, in at most two arenas, and
    give a heap's free top back from 256 KiB on.

    By default glibc raises that threshold (up to 32 MB) as blocks are freed, and keeps freed blocks
    under it in per-thread heaps: a server's request threads (decoded clips, features, openSMILE)
    left it 60 MB larger after 300 requests. Returns False where the C library is not glibc.
    """
    return _mallopt((M_ARENA_MAX, 2), (M_MMAP_THRESHOLD, MAPPED_BYTES), (M_TRIM_THRESHOLD, TRIMMED_BYTES))
