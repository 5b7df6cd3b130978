"""The protocol card of a report: how the figures were obtained, so a reader can tell a real result
from a leaky one: the split scheme, each fold's clips and speakers per split (none shared), the
chance level, and the classical baselines scored on the same test speakers."""

from __future__ import annotations

import json
from pathlib import Path

from ..data.prepared import DATASET_DIR, open_metadata
from ..data.splits import SPLITS


def protocol(data_dir: str | Path, folds: list[int]) -> dict:
    """{scheme, note, labels, chance_uar, folds: [{fold, split: {clips, speakers}}],
    test_speakers_seen_in_training}."""
    root = Path(data_dir)
    plan = json.loads((root / "splits.json").read_text())
    metadata = open_metadata(root / DATASET_DIR)
    speakers = metadata["speaker"] if "speaker" in metadata.column_names else [None] * len(metadata)
    described, shared = [], False
    for fold in folds:
        rows = plan["folds"][fold]
        groups = {name: sorted({speakers[i] for i in rows[name] if speakers[i]}) for name in SPLITS}
        shared |= bool(set(groups["test"]) & (set(groups["train"]) | set(groups["validation"])))
        described.append(
            {"fold": fold, **{name: {"clips": len(rows[name]), "speakers": groups[name]} for name in SPLITS}}
        )
    labels = plan["labels"]
    return {
        "scheme": plan["scheme"],
        "note": plan["note"],
        "labels": labels,
        "chance_uar": 1 / len(labels),
        "folds": described,
        "test_speakers_seen_in_training": shared,
    }


def protocol_lines(card: dict, baselines: dict[str, dict] | None = None) -> list[str]:
    """The card as Markdown: one line on the protocol, a table of the folds' splits."""
    leak = "YES (not speaker-independent)" if card["test_speakers_seen_in_training"] else "none"
    lines = [
        f"Split: {card['scheme']} ({card['note']}); {len(card['labels'])} classes, chance UAR "
        f"{card['chance_uar']:.3f}; test speakers seen in training: {leak}.",
        "",
        "| fold | train clips · speakers | validation clips · speakers | test clips · speakers (ids) |",
        "|---|---|---|---|",
    ]
    for fold in card["folds"]:
        cells = [f"{fold[s]['clips']} · {len(fold[s]['speakers'])}" for s in SPLITS]
        cells[-1] += f" ({', '.join(fold['test']['speakers'])})"
        lines.append(f"| {fold['fold']} | {' | '.join(cells)} |")
    if baselines:
        lines += ["", "Classical baselines on the same test speakers (`ser baseline`):", ""]
        lines += [
            f"- {run['features']} + {run['classifier']}: UAR {run['test']['uar']:.3f}"
            for run in baselines.values()
        ]
    return lines
