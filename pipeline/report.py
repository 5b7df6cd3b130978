"""Human-readable tables for summaries and metrics."""

from __future__ import annotations


def print_summary(summary: dict) -> None:
    """Split x (clips, speakers, hours, per-label counts), then the skipped files."""
    labels = summary["labels"]
    head = ["split", "clips", "speakers", "hours", *labels]
    rows = [
        [name, s["clips"], s["speakers"], f"{s['hours']:.3f}", *(s["labels"][label] for label in labels)]
        for name, s in summary["splits"].items()
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    for row in [head, *rows]:
        print("  ".join(str(x).rjust(w) for x, w in zip(row, widths)))
    kind = "speaker-independent" if summary["speaker_independent"] else "by clip (no speaker information)"
    print(f"corpus: {summary['corpus']} · split {kind} · {len(summary['skipped'])} files skipped")
    for item in summary["skipped"][:10]:
        print(f"  skipped {item['path']}: {item['reason']}")
