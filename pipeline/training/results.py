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
from .baseline import baseline_metrics
from .model_card import write_model_card
from .setup import Setup


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


def _on_main_process(accelerator, compute):
    """`compute()` on the main process, its value shared with the others."""
    return broadcast_object_list([compute() if accelerator.is_main_process else None])[0]


def evaluate_best(best_dir: Path, dataset, labels: list[str], accelerator, batch_size: int) -> dict:
    """{split: metrics} of the saved best checkpoint on validation and test, through `Predictor` at
    fp32 (whole clips, as `ser evaluate` and the service see them); computed by the main process
    and shared with the others."""

    def evaluate() -> dict:
        predictor = Predictor.from_pretrained(best_dir, device=str(accelerator.device), precision="fp32")
        return evaluate_splits(predictor, dataset, labels, batch_size=batch_size)

    return _on_main_process(accelerator, evaluate)


def complete(
    results: dict, setup: Setup, accelerator, stopwatch: Stopwatch, train_log: list, trainer: str
) -> dict:
    """The end of every run: `best/` evaluated as `ser evaluate` evaluates it (timed with the
    validations), the classical baseline on the same split (`ser baseline`), then metrics.json,
    the plots and the model card."""
    results["kept"] = setup.cfg.train.keep
    results["best_val_uar"] = next(
        r["val_uar"] for r in results["history"] if r["step"] == results["best_step"]
    )
    with stopwatch:
        batch_size = setup.cfg.train.batch_size
        results.update(
            evaluate_best(setup.out / "best", setup.dataset, setup.labels, accelerator, batch_size)
        )
    results.update(stopwatch.to_dict())
    sampling_rate = setup.extractor.sampling_rate
    results["baseline"] = _on_main_process(
        accelerator, lambda: baseline_metrics(setup.dataset, setup.labels, sampling_rate)
    )
    if accelerator.is_main_process:
        write_results(setup.out, results, train_log, setup.cfg, trainer)
    return results


def write_results(out: Path, results: dict, train_log: list[dict], cfg: Config, trainer: str) -> None:
    """metrics.json, curves.png, confusion_matrix.png, and in best/: metrics, matrix and model card."""
    write_file_atomic(out / "metrics.json", json.dumps({**results, "train_log": train_log}, indent=1))
    plot_curves(train_log, results["history"], results["best_step"], out / "curves.png")
    if "test" in results:
        plot_confusion_matrix(results["test"], out / "confusion_matrix.png")
        shutil.copy(out / "confusion_matrix.png", out / "best" / "confusion_matrix.png")
        write_file_atomic(out / "best" / "metrics.json", json.dumps(results["test"], indent=2))
        write_model_card(out / "best", cfg, results, trainer)
