"""The workers of archive scoring: each holds the model (`FileScorer`) and answers files as
`ser predict` does; here one process per device (`local_answers`: this process alone for one
worker), on Ray in `archive_ray`."""

from __future__ import annotations

import ctypes
import signal
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context

from ..errors import ConfigError, SerError
from ..functionals import available_cores
from .answers import Options
from .backends import default_device, torch_installed
from .memory import settle_process
from .predictor import Predictor
from .recording import answer_file
from .vad import VadConfig

PR_SET_PDEATHSIG = 1
IN_FLIGHT = 4  # files sent ahead to each worker process


@dataclass(frozen=True)
class Scoring:
    """What a worker needs to answer files (sent to each process or actor)."""

    checkpoint: str
    options: Options
    vad: VadConfig
    precision: str
    backend: str


class FileScorer:
    """The model, loaded once, answering file after file as `ser predict` does: `{"error": ...}`
    for a file that cannot be scored (not found, not audio, too short, no speech)."""

    def __init__(self, scoring: Scoring, device: str, threads: int | None = None):
        device = None if device == "cpu" else device
        self.predictor = Predictor.from_pretrained(
            scoring.checkpoint, device, scoring.precision, scoring.backend, threads
        )
        settle_process(self.predictor.backend)
        self.scoring = scoring

    def __call__(self, path: str) -> dict:
        try:
            return answer_file(path, self.predictor, self.scoring.options, self.scoring.vad, progress=False)
        except SerError as err:
            return {"error": str(err)}


def worker_devices(device: str, workers: int | None, gpus: int) -> list[str]:
    """The device of each worker: on cuda one per GPU by default (`cuda:0`, `cuda:1`, ...; more
    workers share them in turn); on the CPU one worker by default."""
    if device == "auto":
        device = "cuda" if gpus else "cpu"
    if device == "cuda":
        if not gpus:
            raise ConfigError("--device cuda: torch sees no GPU here")
        return [f"cuda:{i % gpus}" for i in range(workers or gpus)]
    return [device] * (workers or 1)


def gpu_count(device: str, backend: str) -> int:
    """The GPUs the workers may use: none on the CPU or with the onnx backend."""
    if device == "cpu" or backend == "onnx" or not torch_installed():
        return 0
    import torch

    return torch.cuda.device_count() if default_device() == "cuda" else 0


def die_with_parent() -> None:
    """Linux: this process gets SIGKILL when the one that started it dies (a killed job leaves no
    workers behind); elsewhere nothing."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


_scorer: FileScorer | SerError | None = None  # a worker process's


def _start_worker(scoring: Scoring, devices, threads: int) -> None:
    die_with_parent()
    global _scorer
    try:
        _scorer = FileScorer(scoring, devices.get(), threads)
    except SerError as err:  # told to the driver with the first file
        _scorer = err


def _score(path: str) -> dict:
    if isinstance(_scorer, SerError):
        raise _scorer
    return _scorer(path)


def local_answers(scoring: Scoring, paths: list[str], devices: list[str]) -> Iterator[tuple[int, dict]]:
    """(index, answer) of each of `paths`, as they are done: in this process for one worker, else in
    one process per device, each on its share of the cores."""
    if len(devices) == 1:
        scorer = FileScorer(scoring, devices[0])
        yield from ((i, scorer(path)) for i, path in enumerate(paths))
        return
    context = get_context("spawn")
    queue = context.Queue()
    for device in devices:
        queue.put(device)
    threads = max(1, available_cores() // len(devices))
    pool = ProcessPoolExecutor(
        len(devices), context, initializer=_start_worker, initargs=(scoring, queue, threads)
    )
    try:
        todo, pending = iter(enumerate(paths)), {}
        while True:
            for i, path in todo:
                pending[pool.submit(_score, path)] = i
                if len(pending) >= IN_FLIGHT * len(devices):
                    break
            if not pending:
                return
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield pending.pop(future), future.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
