"""Human-readable tables for summaries and metrics."""

from __future__ import annotations


def summary_lines(summary: dict) -> list[str]:
    """Split x (clips, speakers, hours, per-label counts), and the corpus and split scheme."""
    labels = summary["labels"]
    head = ["split", "clips", "speakers", "hours", *labels]
    rows = [
        [name, s["clips"], s["speakers"], f"{s['hours']:.3f}", *(s["labels"][label] for label in labels)]
        for name, s in summary["splits"].items()
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    lines = ["  ".join(str(x).rjust(w) for x, w in zip(row, widths)) for row in [head, *rows]]
    folds = f" · {summary['folds']} folds (table: fold 0)" if summary["folds"] > 1 else ""
    lines.append(f"corpus: {', '.join(summary['corpora'])} · {summary['split_note']}{folds}")
    return lines


def print_summary(summary: dict) -> None:
    """The split table, then the problems found in the corpus (by class, with counts and an example)."""
    from .audit import report_lines

    print("\n".join([*summary_lines(summary), *report_lines(summary)]))


def plot_summary(summary: dict, splits: dict, path) -> None:
    """Label counts per split and clip-duration histograms, saved as PNG."""
    import numpy as np

    from ..plots import pyplot

    plt = pyplot()

    labels = summary["labels"]
    fig, (counts, durations) = plt.subplots(1, 2, figsize=(12, 4))
    width = 0.8 / len(splits)
    for i, (name, stats) in enumerate(summary["splits"].items()):
        x = np.arange(len(labels)) + i * width
        counts.bar(x, [stats["labels"][label] for label in labels], width, label=name)
        if len(splits[name]):
            durations.hist(splits[name]["duration"], bins=30, alpha=0.5, label=name)
    counts.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels, rotation=30, ha="right")
    tallest = max(max(stats["labels"].values(), default=0) for stats in summary["splits"].values())
    counts.set_ylim(0, 1.35 * max(tallest, 1))  # room for the legend
    counts.set_ylabel("clips")
    counts.set_title("clips per label")
    counts.legend(ncols=len(splits), loc="upper center")
    durations.set_xlabel("seconds")
    durations.set_title("clip durations")
    durations.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
