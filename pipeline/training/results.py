"""The end of a training run, for every trainer: the best checkpoint evaluated the way `ser evaluate`
evaluates it, then metrics.json, the plots and the model card."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
from accelerate.utils import broadcast_object_list

from ..calibration import calibration_report, fit_temperature, log_softmax
from ..config import Config
from ..data.functionals_cache import table_functionals
from ..files import write_file_atomic
from ..fusion import FunctionalsHead, fit_weight, fused_log_probabilities
from ..inference.evaluate import split_logits, split_targets
from ..inference.predictor import TEMPERATURE_KEY, Predictor
from ..metrics import evaluate_predictions
from ..plots import plot_confusion_matrix, plot_curves, plot_reliability
from .baseline import fold_targets, reported_baselines
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


class FunctionalsFits:
    """The fold's cached functionals and targets (`model.functionals`), read once: heads fitted on the
    speakers of some splits, and a head's log-probabilities of a split's clips."""

    def __init__(self, setup: Setup):
        cfg, self.setup = setup.cfg, setup
        self.table = table_functionals(cfg.data.path, cfg.model.functionals)
        self.rows, self.targets, _ = fold_targets(cfg.data.path, setup.fold)

    def fit(self, splits: tuple[str, ...], weight: float) -> FunctionalsHead:
        seen = [row for split in splits for row in self.rows[split]]
        return FunctionalsHead.fit(
            self.table[seen],
            self.targets[seen],
            len(self.setup.labels),
            self.setup.cfg.model.functionals,
            self.setup.extractor.sampling_rate,
            weight,
        )

    def log_probabilities(self, head: FunctionalsHead, split: str) -> np.ndarray:
        """(clips, classes) in the order of the prepared split's rows."""
        return log_softmax(head.scores(self.table[self.rows[split]]))


def set_temperature(best_dir: Path, temperature: float) -> None:
    """Stores the calibration temperature in the checkpoint's config.json (`Predictor` applies it)."""
    config = json.loads((best_dir / "config.json").read_text())
    write_file_atomic(
        best_dir / "config.json", json.dumps({**config, TEMPERATURE_KEY: temperature}, indent=2)
    )


def evaluate_best(setup: Setup, accelerator) -> dict:
    """Completes the kept checkpoint and scores it through `Predictor` at fp32 (whole clips, as
    `ser evaluate` and the service see them); computed by the main process, shared with the others.

    With `model.functionals`, a functionals head fitted on the training speakers joins the network;
    the network's share of the fused answer (unless `model.functionals_weight` fixes it) and then a
    temperature (applied with `train.calibrate`) are fitted on the validation speakers' answers; the
    head is fitted again on training and validation speakers together (the network's weights stay as
    trained) and saved in `best/`. Validation's metrics are those of the first head (the second has
    seen those speakers), the test's those of the checkpoint as saved; the calibration error without
    and with the temperature on both."""
    best, cfg = setup.out / "best", setup.cfg
    device = str(accelerator.device)

    def answers(name: str, network_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
        predictor = Predictor.from_pretrained(best, device=device, precision="fp32", backend="torch")
        predictor.temperature = 1.0  # the answer before calibration: the report applies the temperature
        if network_only:
            predictor.head = None
        split = setup.dataset[name]
        return split_logits(predictor, split, cfg.train.batch_size), split_targets(split, setup.labels)

    def evaluate() -> dict:
        logits, targets = {}, {}
        logits["validation"], targets["validation"] = answers("validation", network_only=True)
        weight = None
        if cfg.model.functionals:
            fits = FunctionalsFits(setup)
            heard = fits.log_probabilities(fits.fit(("train",), weight=0.0), "validation")  # scores only
            weight = cfg.model.functionals_weight
            if weight is None:
                weight = fit_weight(logits["validation"], heard, targets["validation"])
            logits["validation"] = fused_log_probabilities(logits["validation"], heard, weight)
            fits.fit(("train", "validation"), weight).save(best)
        temperature = fit_temperature(logits["validation"], targets["validation"])
        set_temperature(best, temperature if cfg.train.calibrate else 1.0)
        if len(setup.dataset["test"]):
            logits["test"], targets["test"] = answers("test")
            plot_reliability(logits["test"], targets["test"], temperature, setup.out / "reliability.png")
        found = {
            name: evaluate_predictions(targets[name], logits[name].argmax(-1), setup.labels)
            for name in logits
        }
        found["functionals_weight"] = weight
        found["calibration"] = {
            **calibration_report(logits, targets, temperature),
            "applied": cfg.train.calibrate,
        }
        return found

    return _on_main_process(accelerator, evaluate)


def complete(
    results: dict, setup: Setup, accelerator, stopwatch: Stopwatch, train_log: list, trainer: str
) -> dict:
    """The end of every run: `best/` completed and evaluated as `ser evaluate` evaluates it (timed
    with the validations), the classical baselines on the same split (`ser baseline`), then
    metrics.json, the plots and the model card."""
    results["kept"] = setup.cfg.train.keep
    results["best_val_uar"] = next(
        r["val_uar"] for r in results["history"] if r["step"] == results["best_step"]
    )
    with stopwatch:
        results.update(evaluate_best(setup, accelerator))
    results.update(stopwatch.to_dict())
    results["baselines"] = _on_main_process(
        accelerator, lambda: reported_baselines(setup.cfg.data.path, setup.fold)
    )
    if accelerator.is_main_process:
        write_results(setup.out, results, train_log, setup.cfg, trainer)
    return results


def write_results(out: Path, results: dict, train_log: list[dict], cfg: Config, trainer: str) -> None:
    """metrics.json, curves.png, confusion_matrix.png, and in best/: metrics, the confusion matrix,
    the reliability diagram and the model card."""
    write_file_atomic(out / "metrics.json", json.dumps({**results, "train_log": train_log}, indent=1))
    plot_curves(train_log, results["history"], results["best_step"], out / "curves.png")
    if "test" in results:
        plot_confusion_matrix(results["test"], out / "confusion_matrix.png")
        for plot in ("confusion_matrix.png", "reliability.png"):
            shutil.copy(out / plot, out / "best" / plot)
        write_file_atomic(out / "best" / "metrics.json", json.dumps(results["test"], indent=2))
        write_model_card(out / "best", cfg, results, trainer)
