"""What can be wrong with a corpus, found before and while decoding, and how `ser prepare` reports it.

Every problem is per file, in one of these classes. The file is left out and listed (`summary.json`
`problems` and `skipped`, `report.txt`, the printed report); all classes but `duplicate` count
towards `--max-bad-fraction`, above which `prepare` stops.

- missing: a manifest row names a file that does not exist (or no file at all);
- unreadable: not decodable audio (corrupt, empty, not audio);
- unusable: decodable but too short, too long (with `--long-clips skip`) or silent;
- unlabelled: a manifest row without a label;
- misspelled: a label that is not a known emotion and is one or two letters away from a label the
  run keeps (`--labels`), or, without `--labels`, from a more frequent label of the corpus ("hapy"
  beside "happy"): it is never guessed, the rows are left out;
- conflicting: the same file listed with different labels (which one is right cannot be known);
- duplicate: the same file listed more than once with the same label: kept once.

Labels that exist but are not among `--labels` are a choice, not a problem: they are only counted.
"""

from __future__ import annotations

import difflib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SerError
from .corpora import select_labels
from .corpus_files import CANONICAL, canonical
from .known_corpora import CREMAD_EMOTIONS, EMODB_EMOTIONS, RAVDESS_EMOTIONS, TESS_EMOTIONS, THORSTEN_STYLES

PROBLEMS = {  # class -> title, in report order
    "missing": "missing file",
    "unreadable": "unreadable audio",
    "unusable": "too short, too long or silent",
    "unlabelled": "no label",
    "misspelled": "misspelled label",
    "conflicting": "conflicting labels",
    "duplicate": "listed twice (kept once)",
}
HARMLESS = {"duplicate"}  # not counted towards --max-bad-fraction
EXAMPLES = 5  # per class, in summary.json and the report
KNOWN_LABELS = {
    canonical(label)
    for label in [
        *CANONICAL.values(),
        *RAVDESS_EMOTIONS.values(),
        *CREMAD_EMOTIONS.values(),
        *EMODB_EMOTIONS.values(),
        *TESS_EMOTIONS,
        *THORSTEN_STYLES,
    ]
}
_MISSPELLING_CUTOFF = 0.75  # difflib ratio: "hapy"/"happy" 0.89, "angery"/"angry" 0.91, "sad"/"mad" 0.67


@dataclass
class Audit:
    records: list[dict]  # the rows to decode
    problems: list[dict] = field(default_factory=list)  # {"path", "problem", "reason"}, one per file
    left_out_labels: dict[str, int] = field(default_factory=dict)  # existing labels not among --labels


def _misspellings(census: Counter, wanted: set[str]) -> dict[str, str]:
    """{suspect label: the label it looks like a misspelling of}."""
    found = {}
    for label, count in census.items():
        if label in KNOWN_LABELS or label in wanted:
            continue
        pool = wanted or {other for other, n in census.items() if n > count}
        close = difflib.get_close_matches(label, sorted(pool), n=1, cutoff=_MISSPELLING_CUTOFF)
        if close:
            found[label] = close[0]
    return found


def audit_records(records: list[dict], wanted_labels: list[str]) -> Audit:
    """Leaves out the rows with a problem that shows before decoding, and the labels not wanted."""
    problems: list[dict] = []

    def flag(path: str, problem: str, reason: str) -> None:
        problems.append({"path": path, "problem": problem, "reason": reason})

    by_path: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        if not record.get("path"):
            flag("", "missing", "a manifest row without a path")
        elif not record.get("label"):
            flag(record["path"], "unlabelled", "no label")
        else:
            by_path[record["path"]].append(record)
    unique = []
    for path, rows in by_path.items():
        labels = sorted({r["label"] for r in rows})
        if len(labels) > 1:
            flag(path, "conflicting", f"listed {len(rows)} times, with labels {', '.join(labels)}")
            continue
        if len(rows) > 1:
            flag(path, "duplicate", f"listed {len(rows)} times with label {labels[0]}; kept once")
        unique.append(rows[0])
    wanted = {canonical(label) for label in wanted_labels}
    suspects = _misspellings(Counter(r["label"] for r in unique), wanted)
    for record in unique:
        if record["label"] in suspects:
            flag(
                record["path"],
                "misspelled",
                f"label {record['label']!r} looks like a misspelling of {suspects[record['label']]!r}",
            )
    unique = [r for r in unique if r["label"] not in suspects]
    if not unique:
        raise SerError(_no_usable(problems, len(records)))
    chosen = select_labels(unique, wanted_labels)
    left_out = Counter(r["label"] for r in unique if wanted and r["label"] not in wanted)
    kept = []
    for record in chosen:
        if Path(record["path"]).is_file():
            kept.append(record)
        else:
            flag(record["path"], "missing", "file not found")
    return Audit(kept, problems, dict(sorted(left_out.items())))


def decode_problem(reason: str) -> str:
    """The class of a decoding error message."""
    if reason.startswith(("shorter than", "longer than", "silent")):
        return "unusable"
    if reason.startswith("audio file not found"):
        return "missing"
    return "unreadable"


def _counts(problems: list[dict]) -> str:
    counts = Counter(p["problem"] for p in problems)
    return ", ".join(f"{counts[k]} × {title}" for k, title in PROBLEMS.items() if counts[k])


def _no_usable(problems: list[dict], rows: int) -> str:
    first = f"; first: {problems[0]['path']}: {problems[0]['reason']}" if problems else ""
    return f"none of the {rows} listed files can be used ({_counts(problems)}){first}"


def problem_summary(problems: list[dict]) -> dict[str, dict]:
    """{class: {"title", "count", "examples": ["path: reason", ...]}} of the classes that occur."""
    summary = {}
    for key, title in PROBLEMS.items():
        found = [p for p in problems if p["problem"] == key]
        if found:
            examples = [f"{p['path']}: {p['reason']}" for p in found[:EXAMPLES]]
            summary[key] = {"title": title, "count": len(found), "examples": examples}
    return summary


def check_bad_fraction(problems: list[dict], usable: int, limit: float, listing: Path) -> None:
    """Stops (SerError, one line) when more than `limit` of the files could not be used, or none."""
    bad = [p for p in problems if p["problem"] not in HARMLESS]
    total = usable + len(bad)
    if usable == 0:
        raise SerError(f"{_no_usable(problems, total)}; all are listed in {listing}")
    if len(bad) > limit * total:
        raise SerError(
            f"{len(bad)} of {total} files could not be used (limit {limit:.0%}): {_counts(bad)}; "
            f"first: {bad[0]['path']}: {bad[0]['reason']}; all are listed in {listing}"
        )


def report_lines(summary: dict) -> list[str]:
    """The data-quality part of the `prepare` report (printed, and written to report.txt)."""
    problems = summary.get("problems", {})
    bad = sum(v["count"] for k, v in problems.items() if k not in HARMLESS)
    lines = []
    if not problems:
        lines.append("no problems found in the corpus")
    else:
        limit = summary.get("config", {}).get("max_bad_fraction")
        share = f" (limit {limit:.0%})" if limit is not None else ""
        lines.append(f"{bad} of {summary.get('candidate_files', '?')} files left out{share}:")
        width = max(len(v["title"]) for v in problems.values())
        for value in problems.values():
            lines.append(f"  {value['title'].ljust(width)}  {value['count']:>5}  e.g. {value['examples'][0]}")
    left_out = summary.get("left_out_labels") or {}
    if left_out:
        lines.append("not among --labels: " + ", ".join(f"{k} ({n})" for k, n in left_out.items()))
    return lines
