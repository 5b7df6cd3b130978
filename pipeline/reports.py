"""What `ser train`, `ser probe` and `ser baseline` print of a run's results: the test scores, the
calibration, the classical baselines beside the model, and cross-validation's mean ± std."""

from __future__ import annotations

from pathlib import Path

from .config import KEPT, Config


def print_cross_validation(summary: dict) -> None:
    """Mean ± std over the folds of the model, the baselines and the calibration."""

    def spread(stats: dict) -> str:
        return f"{stats['mean']:.3f} ± {stats['std']:.3f}"

    folds = len(summary["uar"]["folds"])
    for key in ("accuracy", "uar", "macro_f1"):
        print(f"{key}: {spread(summary[key])} over {folds} folds")
    for name, stats in summary.get("baselines_uar", {}).items():
        print(f"baseline UAR ({name}): {spread(stats)}")
    if "calibration" in summary:
        ece = summary["calibration"]
        print(f"calibration: test ECE {spread(ece['ece_before'])} -> {spread(ece['ece_after'])}")


def scores(metrics: dict) -> str:
    """ "accuracy 0.750 · UAR 0.741 · macro-F1 0.733"."""
    return (
        f"accuracy {metrics['accuracy']:.3f} · UAR {metrics['uar']:.3f} · macro-F1 {metrics['macro_f1']:.3f}"
    )


def print_result(results: dict, cfg: Config) -> None:
    """One run: test scores, calibration, baselines and the model, the kept checkpoint."""
    test = results.get("test")
    if test:
        print(f"test: {scores(test)}")
        calibration = results.get("calibration", {}).get("test")
        if calibration:
            applied = "applied" if results["calibration"]["applied"] else "not applied: --no-calibrate"
            print(
                f"calibration: test ECE {calibration['ece_before']:.3f}, with the temperature fitted on the "
                f"validation speakers ({results['calibration']['temperature']:.2f}, {applied}) "
                f"{calibration['ece_after']:.3f}"
            )
        print(f"{baselines_line(results['baselines'])} · this model {test['uar']:.3f} (test speakers)")
    print(f"kept checkpoint ({KEPT[cfg.train.keep]}): {Path(cfg.train.output_dir) / 'best'}")


def baselines_line(baselines: dict) -> str:
    """ "baseline UAR 0.729 (compare) · 0.643 (mfcc)": the classical baselines' test UAR."""
    found = " · ".join(f"{run['test']['uar']:.3f} ({name})" for name, run in baselines.items())
    return f"baseline UAR {found}"


def print_seeds(summary: dict) -> None:
    """Mean over seeds ± standard deviation between seeds, and the largest between seeds of a fold."""
    seeds = len(summary["seeds"])
    for key in ("accuracy", "uar", "macro_f1"):
        stats = summary[key]
        print(
            f"{key}: {stats['mean']:.3f} ± {stats['std_over_seeds']:.3f} over {seeds} seeds "
            f"(folds: {' '.join(f'{v:.3f}' for v in stats['folds'])}; "
            f"largest std between seeds of a fold {max(stats['fold_std_over_seeds']):.3f})"
        )
    for name, stats in summary.get("baselines_uar", {}).items():
        print(f"baseline UAR ({name}): {stats['mean']:.3f} ± {stats['std']:.3f} over folds")
