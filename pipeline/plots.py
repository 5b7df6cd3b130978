"""Training plots: the confusion matrix, the loss and metric curves and the reliability diagram."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .calibration import expected_calibration_error, reliability_bins, softmax


def pyplot():
    """matplotlib.pyplot with the file-only Agg backend (imported on first use: it is slow)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(metrics: dict, path: str | Path, title: str = "") -> None:
    """Row-normalised confusion matrix with counts, saved as PNG."""
    plt = pyplot()
    cm = np.asarray(metrics["confusion_matrix"])
    labels = metrics["labels"]
    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.2 * len(labels) + 2, 1.1 * len(labels) + 1.5))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(
                j, i, str(cm[i, j]), ha="center", va="center", color="white" if rates[i, j] > 0.5 else "black"
            )
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"accuracy {metrics['accuracy']:.3f} · UAR {metrics['uar']:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_curves(train_log: list[dict], history: list[dict], kept_step: int, path: str | Path) -> None:
    """Training loss per step (and its running mean), validation loss and validation metrics, the
    step of the kept weights (`best/`) marked."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    if train_log:
        steps = np.array([r["step"] for r in train_log])
        loss = np.array([r["loss"] for r in train_log])
        window = max(1, len(loss) // 25)
        left.plot(steps, loss, color="tab:blue", alpha=0.25, lw=0.8)
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        left.plot(steps[window - 1 :], smooth, color="tab:blue", label="train")
    if history:
        steps = [h["step"] for h in history]
        left.plot(steps, [h["val_loss"] for h in history], "o-", color="tab:orange", label="validation")
        for key, name in (("val_accuracy", "accuracy"), ("val_uar", "UAR"), ("val_macro_f1", "macro-F1")):
            right.plot(steps, [h[key] for h in history], "o-", label=name)
        right.axvline(kept_step, color="grey", ls="--", lw=0.8, label=f"kept (step {kept_step})")
    left.set(xlabel="optimizer step", ylabel="cross-entropy", title="loss")
    right.set(xlabel="optimizer step", ylim=(0, 1.02), title="validation")
    left.legend()
    right.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_reliability(
    logits: np.ndarray,
    targets: np.ndarray,
    temperature: float,
    path: str | Path,
    bins: int = 15,
    title: str = "",
) -> None:
    """Reliability diagram: accuracy against confidence per confidence bin, of the raw probabilities and
    of the temperature-scaled ones (ECE in the legend), the bins' sample counts below."""
    plt = pyplot()
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(5, 5), sharex=True, gridspec_kw={"height_ratios": (3, 1)}
    )
    top.plot([0, 1], [0, 1], color="grey", ls="--", lw=0.8, label="perfect calibration")
    width = 1 / bins
    for t, name, color, shift in (
        (1.0, "raw", "tab:red", -0.25),
        (temperature, f"T = {temperature:.2f}", "tab:blue", 0.25),
    ):
        probabilities = softmax(logits, t)
        rows = reliability_bins(probabilities, targets, bins)
        ece = expected_calibration_error(probabilities, targets, bins)
        top.plot(
            [r["confidence"] for r in rows],
            [r["accuracy"] for r in rows],
            "o-",
            color=color,
            label=f"{name} (ECE {ece:.3f})",
        )
        centres = [(r["lower"] + r["upper"]) / 2 + shift * width for r in rows]
        bottom.bar(centres, [r["count"] for r in rows], width=width / 2, color=color, alpha=0.7)
    top.set(xlim=(0, 1), ylim=(0, 1.02), ylabel="accuracy", title=title or "reliability")
    top.legend(loc="upper left", fontsize="small")
    bottom.set(xlabel="confidence", ylabel="samples")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
