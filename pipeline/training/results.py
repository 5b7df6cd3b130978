"""The end of a training run, for every trainer: the best checkpoint evaluated the way `ser evaluate`
evaluates it, then metrics.json, the plots and the model card."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from accelerate.utils import broadcast_object_list

from ..config import Config
from ..files import write_file_atomic
from ..inference.evaluate import evaluate_splits
from ..inference.predictor import Predictor
from ..plots import plot_confusion_matrix, plot_curves
from .model_card import write_model_card


class Stopwatch:
    """Wall and CPU seconds spent inside `with stopwatch:` blocks (evaluation, in the results)."""

    def __init__(self) -> None:
        self.seconds, self.cpu_seconds = 0.0, 0.0

    def __enter__(self) -> Stopwatch:
        self._start = (time.perf_counter(), time.process_time())
        return self

    def __exit__(self, *exc) -> None:
        self.seconds += time.perf_counter() - self._start[0]
        self.cpu_seconds += time.process_time() - self._start[1]

    def to_dict(self) -> dict[str, float]:
        return {"evaluation_s": round(self.seconds, 3), "evaluation_cpu_s": round(self.cpu_seconds, 3)}


def evaluate_best(best_dir: Path, dataset, labels: list[str], accelerator, batch_size: int) -> dict:
    """{split: metrics} of the saved best checkpoint on validation and test, through `Predictor` at
    fp32 (whole clips, as `ser evaluate` and the service see them); computed by the main process
    and shared with the others."""
    found = [None]
    if accelerator.is_main_process:
        predictor = Predictor.from_pretrained(best_dir, device=str(accelerator.device), precision="fp32")
        found = [evaluate_splits(predictor, dataset, labels, batch_size=batch_size)]
    return broadcast_object_list(found)[0]


def write_results(out: Path, results: dict, train_log: list[dict], cfg: Config, trainer: str) -> None:
    """metrics.json, curves.png, confusion_matrix.png, and in best/: metrics, matrix and model card."""
    write_file_atomic(out / "metrics.json", json.dumps({**results, "train_log": train_log}, indent=1))
    plot_curves(train_log, results["history"], out / "curves.png")
    if "test" in results:
        plot_confusion_matrix(results["test"], out / "confusion_matrix.png")
        shutil.copy(out / "confusion_matrix.png", out / "best" / "confusion_matrix.png")
        write_file_atomic(out / "best" / "metrics.json", json.dumps(results["test"], indent=2))
        write_model_card(out / "best", cfg, results, trainer)
