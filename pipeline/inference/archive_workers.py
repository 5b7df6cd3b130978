"""The workers of archive scoring: each holds the model (`FileScorer`) and answers files as
`ser predict` does; here one process per device (`local_answers`: this process alone for one
worker), on Ray in `archive_ray`."""

from __future__ import annotations

import ctypes
import itertools
import queue
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing import get_context

from ..errors import ConfigError, SerError
from ..functionals import available_cores
from .answers import Options
from .backends import default_device, resolve_device, torch_installed
from .memory import settle_process
from .predictor import Predictor
from .recording import answer_file
from .vad import VadConfig

PR_SET_PDEATHSIG = 1
IN_FLIGHT = 4  # files sent ahead to each worker process
FAILED = -1  # the index of a worker's message that it cannot go on


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
        self.predictor = Predictor.from_pretrained(
            scoring.checkpoint,
            resolve_device(device, scoring.backend),
            scoring.precision,
            scoring.backend,
            threads,
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


def _work(scoring: Scoring, device: str, threads: int, tasks, answers) -> None:
    """A worker process: the model loaded once, then each (index, path) of `tasks` answered into
    `answers` until None; (FAILED, why) where it cannot go on. It ignores Ctrl-C (its driver
    handles it) and exits cleanly on SIGTERM (its driver stopping it)."""
    die_with_parent()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # the driver's stop: exit cleanly
    try:
        scorer = FileScorer(scoring, device, threads)
        while (task := tasks.get()) is not None:
            index, path = task
            answers.put((index, scorer(path)))
    except Exception as err:  # not a file's problem (those are answers): the job stops
        answers.put((FAILED, str(err) if isinstance(err, SerError) else f"{type(err).__name__}: {err}"))


def _processes(scoring: Scoring, paths: list[str], devices: list[str]) -> Iterator[tuple[int, dict]]:
    """(index, answer) of each of `paths` from one process per device, each on its share of the
    cores, `IN_FLIGHT` files ahead; the processes are stopped however this ends."""
    context = get_context("spawn")
    tasks, answers = context.Queue(), context.Queue()
    threads = max(1, available_cores() // len(devices))
    workers = [
        context.Process(target=_work, args=(scoring, device, threads, tasks, answers), daemon=True)
        for device in devices
    ]
    interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)  # they start with Ctrl-C ignored
    try:
        for worker in workers:
            worker.start()
    finally:
        signal.signal(signal.SIGINT, interrupt)
    finished = False
    try:
        todo = iter(enumerate(paths))
        for task in itertools.islice(todo, IN_FLIGHT * len(workers)):
            tasks.put(task)
        for _ in paths:
            yield _next_answer(answers, workers)
            for task in itertools.islice(todo, 1):
                tasks.put(task)
        for _ in workers:
            tasks.put(None)  # every file answered: they exit
        finished = True
    finally:
        for worker in workers:
            if not finished:  # stopped early (Ctrl-C, an error): now
                worker.terminate()
            worker.join()


def _next_answer(answers, workers) -> tuple[int, dict]:
    """The next (index, answer); SerError where a worker failed or died."""
    while True:
        try:
            index, answer = answers.get(timeout=1.0)
        except queue.Empty:
            dead = [w for w in workers if not w.is_alive()]
            if dead:
                raise SerError(
                    f"a worker process stopped (exit code {dead[0].exitcode}; out of memory?): "
                    "the files scored so far are kept, run the command again to go on"
                ) from None
            continue
        if index == FAILED:
            raise SerError(answer)
        return index, answer


def local_answers(scoring: Scoring, paths: list[str], devices: list[str]) -> Iterator[tuple[int, dict]]:
    """(index, answer) of each of `paths`, as they are done: in this process for one worker, else in
    one process per device."""
    if len(devices) == 1:
        scorer = FileScorer(scoring, devices[0])
        return ((i, scorer(path)) for i, path in enumerate(paths))
    return _processes(scoring, paths, devices)
