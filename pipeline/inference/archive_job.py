"""`ser predict --output-dir`: every file of an archive (a folder or a manifest, `archive`) scored
into a table of shards (`archive_table`), by worker processes that each hold the model
(`--workers`, `archive_workers`), or by Ray Data actors on a cluster (`--engine ray`,
`archive_ray`). Workers answer files and send the answers back; the driver alone writes, so the
rows do not depend on where they were computed, and a job killed at any moment goes on where it
stopped when started again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

from tqdm.auto import tqdm

from ..commands import PredictArgs
from ..errors import OptionError, SerError
from .answers import Options
from .archive import archive_files
from .archive_table import ArchiveTable
from .archive_workers import Scoring, gpu_count, local_answers, worker_devices
from .onnx_model import weights_digest
from .predictor import checkpoint_labels
from .vad import VadConfig


def answers_of(scoring: Scoring, paths: list[str], cfg: PredictArgs) -> Iterator[tuple[int, dict]]:
    """(index, answer) of each of `paths` from the engine `cfg` asks for."""
    job, runtime = cfg.archive, cfg.runtime
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
    for flag, value in (
        ("--workers", 1 if job.workers is None else job.workers),
        ("--shard-files", job.shard_files),
    ):
        if value < 1:
            raise OptionError(f"{flag} must be at least 1, got {value}")
    files = archive_files(sources[0])
    labels = checkpoint_labels(cfg.checkpoint)
    options.check(len(labels))
    vad.check()
    try:
        weights = weights_digest(cfg.checkpoint)
    except OSError as err:
        raise SerError(f"cannot read the weights in {cfg.checkpoint}: {err.strerror}") from None
    run = {
        "model": {"weights_sha256": weights, "labels": labels},
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
    tally = Tally()
    try:
        if todo:
            scoring = Scoring(cfg.checkpoint, options, vad, runtime.precision, runtime.backend)
            answers = answers_of(scoring, [str(f.path.absolute()) for f in todo], cfg)
            done = len(files) - len(todo)
            with tqdm(total=len(files), initial=done, unit="file", desc="scoring", disable=None) as bar:
                for i, answer in answers:
                    table.add(todo[i], answer)
                    tally.add(answer)
                    bar.update()
                    bar.set_postfix_str(f"{tally.seconds / tally.elapsed:.0f}x real time")
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
    return f"{tally}; {len(files) - len(todo)} were there already: {job.output_dir}"


@dataclass
class Tally:
    """What a job did: files, seconds of audio and failures, and when its first answer came."""

    files: int = 0
    seconds: float = 0.0
    failed: int = 0
    start: float = field(default_factory=time.monotonic)
    first: float | None = None  # seconds to the first answer: start-up and loading the model

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def add(self, answer: dict) -> None:
        if self.first is None:
            self.first = self.elapsed
        self.files += 1
        self.seconds += answer.get("duration_s", 0.0)
        self.failed += "error" in answer

    def __str__(self) -> str:
        wall = self.elapsed
        return (
            f"{self.files} files scored ({self.seconds / 3600:.2f} h of audio) in {wall:.1f} s, the first "
            f"after {self.first:.1f} s ({self.files / wall:.1f} files/s, {self.seconds / wall:.0f}x real "
            f"time); {self.failed} could not be scored (rows with an error)"
        )
