"""`ser predict --output-dir`: every file of an archive (a folder or a manifest, `archive`) scored
into a table of shards (`archive_table`), by worker processes that each hold the model
(`--workers`), or by Ray Data actors on a cluster (`--engine ray`, `archive_ray`). Workers answer
files and send the answers back; the driver alone writes, so the rows do not depend on where they
were computed, and a job killed at any moment goes on where it stopped when started again.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from multiprocessing import get_context

from tqdm.auto import tqdm

from ..commands import PredictArgs
from ..errors import ConfigError, OptionError, SerError
from ..functionals import available_cores
from .answers import Options
from .archive import archive_files
from .archive_table import ArchiveTable
from .backends import default_device, torch_installed
from .memory import settle_process
from .onnx_model import weights_digest
from .predictor import Predictor, checkpoint_labels
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
        if threads:
            os.environ["OMP_NUM_THREADS"] = str(threads)  # ONNX Runtime's threads (`thread_budget`)
        device = None if device == "cpu" else device
        self.predictor = Predictor.from_pretrained(
            scoring.checkpoint, device, scoring.precision, scoring.backend
        )
        if threads and self.predictor.backend == "torch":
            import torch

            torch.set_num_threads(threads)
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


def answers_of(scoring: Scoring, paths: list[str], cfg: PredictArgs) -> Iterator[tuple[int, dict]]:
    """(index, answer) of each of `paths` from the engine `cfg` asks for."""
    job, runtime = cfg.archive, cfg.runtime
    if job.workers is not None and job.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {job.workers}")
    if job.engine == "ray":
        from .archive_ray import ray_answers

        return ray_answers(scoring, paths, job.workers or 1, runtime.device, job.ray_address)
    gpus = gpu_count(runtime.device, runtime.backend)
    return local_answers(scoring, paths, worker_devices(runtime.device, job.workers, gpus))


def score_archive(sources: list[str], cfg: PredictArgs, options: Options, vad: VadConfig) -> str:
    """Scores every file of the folder or manifest in `sources` not yet in `cfg.archive.output_dir`;
    returns the summary line."""
    job, runtime = cfg.archive, cfg.runtime
    if len(sources) != 1 or cfg.output:
        raise OptionError("--output-dir scores one folder or manifest (timelines go in its table)")
    files = archive_files(sources[0])
    labels = checkpoint_labels(cfg.checkpoint)
    options.check(len(labels))
    vad.check()
    run = {
        "model": {"weights_sha256": weights_digest(cfg.checkpoint), "labels": labels},
        "options": {
            **asdict(options),
            **({"vad": asdict(vad)} if options.segments else {}),
            "precision": runtime.precision,
        },
        "format": job.format,
        "checkpoint": os.path.abspath(cfg.checkpoint),
        "source": os.path.abspath(sources[0]),
    }
    table = ArchiveTable(job.output_dir, run, options.timeline, files, job.shard_files)
    todo = [f for f in files if f.key not in table.done]
    seconds, failed, start = 0.0, 0, time.monotonic()
    try:
        if todo:
            scoring = Scoring(cfg.checkpoint, options, vad, runtime.precision, runtime.backend)
            answers = answers_of(scoring, [str(f.path.absolute()) for f in todo], cfg)
            done = len(files) - len(todo)
            with tqdm(total=len(files), initial=done, unit="file", desc="scoring", disable=None) as bar:
                for i, answer in answers:
                    table.add(todo[i], answer)
                    seconds += answer.get("duration_s", 0.0)
                    failed += "error" in answer
                    bar.update()
                    bar.set_postfix_str(f"{seconds / (time.monotonic() - start):.0f}x real time")
    except (SerError, KeyboardInterrupt):
        raise
    except Exception as err:  # a worker that died, or a bug: what is written stays
        raise SerError(
            f"scoring stopped ({type(err).__name__}: {err}); the files scored so far are kept: "
            "run the command again to go on"
        ) from err
    finally:
        table.close()
    if not todo:
        return f"all {len(files)} files are in {job.output_dir} already"
    wall = time.monotonic() - start
    return (
        f"{len(todo)} files scored ({seconds / 3600:.2f} h of audio) in {wall:.1f} s "
        f"({len(todo) / wall:.1f} files/s, {seconds / wall:.0f}x real time); {failed} could not be "
        f"scored (rows with an error); {len(files) - len(todo)} were there already: {job.output_dir}"
    )
