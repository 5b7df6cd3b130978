"""Train / validation / test splits (one, k folds or leave-one-group-out), deterministic from a seed.

Clips are split by speaker when the data allow it, else by sentence, else one by one; no group (speaker or
sentence) is in two splits of a fold. Groups are placed greedily so each split's size, label mix and gender
mix stay near its share of the corpus.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict, deque
from dataclasses import dataclass

from ..arguments import option
from ..errors import SerError

SPLITS = ("train", "validation", "test")
GROUP_SCHEMES = ("speaker", "sentence")
SCHEMES = ("auto", *GROUP_SCHEMES, "clip")
MIN_GROUPS = 3  # one each for train, validation and test
CLIPS = ("clips",)  # the count of clips in a profile, beside ("label", l) and ("gender", g)


@dataclass
class SplitConfig:
    """How clips are split into train, validation and test, keeping each speaker in one of them."""

    validation: float = option(
        0.15, "share of speakers (sentences, clips) for validation", flag="--validation-size"
    )
    test: float = option(0.2, "share of speakers (sentences, clips) for test", flag="--test-size")
    seed: int = option(0, "seeds the split")
    scheme: str = option(
        "auto",
        "what no two splits may share; auto picks speaker where it can",
        flag="--split-by",
        choices=SCHEMES,
    )
    folds: str = option("1", "1 (one split), K (K-fold by group) or loso (leave one group out)")


@dataclass
class SplitPlan:
    scheme: str  # the scheme used: speaker | sentence | clip
    note: str  # one sentence for people: what the split guarantees, and why this scheme
    folds: list[dict[str, list[int]]]  # per fold: split name -> sorted indices into the records


def _why_not(records: list[dict], key: str) -> str | None:
    """Why the clips cannot be split by `key` (speaker, sentence), or None when they can."""
    missing = sum(not r.get(key) for r in records)
    if missing == len(records):
        return f"{key}s unknown"
    if missing:
        return f"{missing} clip(s) without a {key}"
    n = len({r[key] for r in records})
    if n < MIN_GROUPS:
        return f"one {key} only" if n == 1 else f"only {n} {key}s"
    return None


def _choose(records: list[dict], scheme: str) -> tuple[str, str]:
    """(scheme, note): the one asked for, or for `auto` the strictest the data allow."""
    if scheme not in SCHEMES:
        raise SerError(f"unknown split scheme {scheme!r}; choose from {', '.join(SCHEMES)}")
    why = {key: _why_not(records, key) for key in GROUP_SCHEMES}
    if scheme in GROUP_SCHEMES and why[scheme]:
        raise SerError(
            f"cannot split by {scheme}: {why[scheme]} (it needs a {scheme} for every clip "
            f"and at least {MIN_GROUPS} {scheme}s)"
        )
    if scheme == "speaker" or (scheme == "auto" and not why["speaker"]):
        return "speaker", "speaker-independent: no speaker in two splits"
    if scheme == "sentence":
        return "sentence", "sentence-independent: no sentence in two splits (a speaker may be in several)"
    if scheme == "auto" and not why["sentence"]:
        return "sentence", (
            f"{why['speaker']}: a speaker-independent split is impossible; "
            "split by sentence so no sentence crosses splits"
        )
    if len(records) < MIN_GROUPS:
        raise SerError(f"cannot split {len(records)} clip(s): need at least {MIN_GROUPS}")
    if scheme == "clip":
        return "clip", "split by clip, stratified by label: a speaker or sentence may be in two splits"
    return "clip", (
        f"{why['speaker']} and {why['sentence']}: no speaker- or sentence-independent split is possible; "
        "clips are split at random, stratified by label"
    )


def _groups(records: list[dict], scheme: str) -> list[list[int]]:
    """Record indices of each group (speaker or sentence, sorted by name; for `clip` each clip alone)."""
    if scheme == "clip":
        return [[i] for i in range(len(records))]
    by_key: dict[str, list[int]] = defaultdict(list)
    for i, record in enumerate(records):
        by_key[record[scheme]].append(i)
    return [by_key[key] for key in sorted(by_key)]


def _profiles(records: list[dict], groups: list[list[int]]) -> list[Counter]:
    """Per group: its clip count and clips per label, and per gender when every clip has one."""
    genders = all(r.get("gender") for r in records)
    profiles = []
    for members in groups:
        profile = Counter({CLIPS: len(members)})
        profile.update(("label", records[i]["label"]) for i in members)
        if genders:
            profile.update(("gender", records[i]["gender"]) for i in members)
        profiles.append(profile)
    return profiles


def _assign(profiles: list[Counter], order: list[int], shares: dict[str, float]) -> dict[str, list[int]]:
    """Groups (indices into `profiles`; ties go by `order`) -> bins. Each step makes the move (a group into a
    bin) that brings the counts (clips, labels, genders) closest to every bin's share of the totals, as a
    chi-square; once the groups left are no more than the empty bins, only those take them."""
    total = sum((profiles[g] for g in order), Counter())
    targets = {b: {d: share * n for d, n in total.items()} for b, share in shares.items()}
    counts = {b: Counter() for b in shares}
    bins: dict[str, list[int]] = {b: [] for b in shares}
    # Groups alike in every count are interchangeable. A profile is its counts in a fixed order: summed
    # in an order that hashing decides (a frozenset), near-equal costs tie differently from one Python
    # process to the next (PYTHONHASHSEED), and so would the splits.
    pool: dict[tuple, deque[int]] = defaultdict(deque)
    for g in order:
        pool[tuple(sorted(profiles[g].items(), key=repr))].append(g)

    def cost(b: str, profile: tuple) -> float:
        """How much bin `b`'s chi-square, sum of (count - target)² / target, grows if it takes `profile`."""
        return sum(n * (n + 2 * (counts[b][d] - targets[b][d])) / max(targets[b][d], 1.0) for d, n in profile)

    for left in range(len(order), 0, -1):
        empty = [b for b in bins if not bins[b]]
        b, profile = min(
            ((b, p) for b in (empty if left <= len(empty) else bins) for p in pool), key=lambda bp: cost(*bp)
        )
        g = pool[profile].popleft()
        if not pool[profile]:
            del pool[profile]
        bins[b].append(g)
        counts[b].update(profiles[g])
    return bins


def _parts(profiles: list[Counter], order: list[int], folds: str, scheme: str) -> list[list[int]]:
    """The test groups of each fold: one group each for `loso`, else k parts balanced like the splits.
    Every fold keeps at least two groups for training and validation."""
    n = len(order)
    unit = f"{scheme}s" if scheme in GROUP_SCHEMES else "clips"
    if folds == "loso":
        if scheme == "clip":
            raise SerError("folds 'loso' leaves out one speaker or sentence at a time; this split is by clip")
        return [[g] for g in range(n)]
    if not folds.isdigit() or not 2 <= int(folds) <= n:
        raise SerError(f"folds must be 1, an integer from 2 to {n} (the {unit}), or loso; got {folds!r}")
    parts = list(_assign(profiles, order, {str(i): 1 / int(folds) for i in range(int(folds))}).values())
    if n - max(map(len, parts)) < 2:
        raise SerError(
            f"{folds} folds of {n} {unit} leave too few for training and validation; use more folds"
        )
    return parts


def _around(
    profiles: list[Counter], parts: list[list[int]], i: int, cfg: SplitConfig, rng: random.Random
) -> dict[str, list[int]]:
    """Fold `i`: part `i` is the test split; validation takes about `cfg.validation` of all clips from the
    other parts, training the rest."""
    rest = [g for j, part in enumerate(parts) if j != i for g in part]
    clips = sum(profiles[g][CLIPS] for part in parts for g in part)
    share = min(1.0, cfg.validation * clips / sum(profiles[g][CLIPS] for g in rest))
    rng.shuffle(rest)
    return {**_assign(profiles, rest, {"train": 1 - share, "validation": share}), "test": parts[i]}


def make_splits(records: list[dict], cfg: SplitConfig) -> SplitPlan:
    """Indices of `records` per split of each fold, by `cfg.scheme` (for `auto`, the strictest the data
    allow). The same records and config give the same plan."""
    if min(cfg.validation, cfg.test) < 0 or cfg.validation + cfg.test >= 1:
        raise SerError(
            f"split shares must be >= 0 and sum below 1: validation {cfg.validation}, test {cfg.test}"
        )
    scheme, note = _choose(records, cfg.scheme)
    groups = _groups(records, scheme)
    profiles = _profiles(records, groups)
    rng = random.Random(cfg.seed)
    order = list(range(len(groups)))
    rng.shuffle(order)
    if cfg.folds == "1":
        shares = {"train": 1 - cfg.validation - cfg.test, "validation": cfg.validation, "test": cfg.test}
        folds = [_assign(profiles, order, shares)]
    else:
        parts = _parts(profiles, order, cfg.folds, scheme)
        folds = [_around(profiles, parts, i, cfg, rng) for i in range(len(parts))]
    return SplitPlan(
        scheme,
        note,
        [{name: sorted(i for g in fold[name] for i in groups[g]) for name in SPLITS} for fold in folds],
    )
