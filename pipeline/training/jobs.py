"""Several training runs (the folds of a cross-validation, the seeds of `--seeds`) at once on a CPU:
one process per run, one thread each.

On a CPU, `ser train` runs one run per core (`--jobs`, default: the cores this process may use),
each on one thread: the cores stay busy without threads of one run waiting for each other, and a
run's numbers (floating-point sums depend on the thread count) depend neither on the machine's
core count nor on how many runs share it. With one job (or a GPU, or `accelerate launch`
processes) the runs go one after another in this process, on all its threads.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from unittest.mock import patch  # os.environ for the block: the workers inherit it

from tqdm.auto import tqdm

from ..config import Config
from ..functionals import available_cores

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
LOG_FILE = "train.log"  # a worker's run's output and progress bar (`tail -f`), in its output directory


@dataclass
class Run:
    """One training run: its configuration (output directory and seed included) and its fold."""

    cfg: Config
    fold: int

    @property
    def name(self) -> str:
        return f"seed {self.cfg.train.seed} fold {self.fold}"


def fitter(trainer: str):
    """The function that trains one fold with `train.trainer`."""
    if trainer == "hf":
        from .hf_trainer import train_fold_with_trainer  # imports Trainer (slow): only when used

        return train_fold_with_trainer
    from .loop import train_fold

    return train_fold


def cpu_only() -> bool:
    """True where training runs on this process's CPU alone: no GPU, no `accelerate launch` group."""
    from accelerate import PartialState

    state = PartialState()
    return state.num_processes == 1 and state.device.type == "cpu"


def worker_count(runs: int, jobs: int | None) -> int:
    """How many runs go at once: `jobs` (default: one per available core), at most `runs`; 1 off a CPU."""
    wanted = available_cores() if jobs is None else jobs
    return max(1, min(wanted, runs)) if cpu_only() else 1


def _run_in_worker(run: Run, resume: bool) -> dict:
    """A worker's run, its output in `OUTPUT_DIR/train.log`."""
    out = Path(run.cfg.train.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOG_FILE, "a", encoding="utf-8") as log, redirect_stdout(log), redirect_stderr(log):
        return fitter(run.cfg.train.trainer)(run.cfg, run.fold, resume=resume)


def run_all(runs: list[Run], resume: bool = False, jobs: int | None = None) -> list[dict]:
    """Every run's results, in the order of `runs`; `worker_count` of them at once. A run that fails
    fails the whole: the runs not yet started are cancelled, those under way finish first (each run
    keeps its checkpoints: `--resume` continues)."""
    workers = worker_count(len(runs), jobs)
    if workers == 1:
        return [fitter(run.cfg.train.trainer)(run.cfg, run.fold, resume=resume) for run in runs]
    results: list[dict | None] = [None] * len(runs)
    bar = tqdm(total=len(runs), desc=f"training runs, {workers} at a time", unit="run")
    spawn = get_context("spawn")
    with patch.dict(os.environ, ONE_THREAD), ProcessPoolExecutor(workers, mp_context=spawn) as pool:
        pending = {pool.submit(_run_in_worker, run, resume): i for i, run in enumerate(runs)}
        try:
            for done in as_completed(pending):
                i = pending[done]
                results[i] = done.result()
                test = results[i].get("test")
                bar.write(f"{runs[i].name} done" + (f": test UAR {test['uar']:.3f}" if test else ""))
                bar.update()
        except BaseException:
            for future in pending:
                future.cancel()  # the runs not yet started; those under way finish or fail on their own
            raise
        finally:
            bar.close()
    return results
