"""Split plans on synthetic record lists: group-disjoint, stratified, deterministic, k-fold and LOSO."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from itertools import product

import pytest

from pipeline.data.splits import SPLITS, SplitConfig, make_splits
from pipeline.errors import SerError

pytestmark = pytest.mark.fast  # pure logic: `make test-fast`


def _speakers(n: int, clips: int = 6, labels: int = 3) -> list[dict]:
    """`n` speakers, `clips` each with labels in turn, genders alternating (even speakers male)."""
    return [
        {"path": f"{s}_{i}", "label": f"l{i % labels}", "speaker": f"s{s:02d}", "gender": "mf"[s % 2]}
        for s in range(n)
        for i in range(clips)
    ]


def _skewed() -> list[dict]:
    """12 speakers, half mostly angry, half mostly sad, with 8 to 18 clips each."""
    records = []
    for s in range(12):
        main, other = ("angry", "sad") if s % 2 else ("sad", "angry")
        mix = [main] * (6 + s % 6) + [other] * 2 + ["neutral"] * 2
        records += [
            {"path": f"{s}_{i}", "label": label, "speaker": f"s{s:02d}"} for i, label in enumerate(mix)
        ]
    return records


def _check_folds(records: list[dict], plan, key: str | None) -> None:
    """Every split of every fold is non-empty and `key`-disjoint; every record is in one split per fold
    and, with several folds, in the test split of exactly one."""
    for fold in plan.folds:
        assert list(fold) == list(SPLITS) and all(fold.values())
        assert sorted(i for rows in fold.values() for i in rows) == list(range(len(records)))
        if key:
            groups = [{records[i][key] for i in rows} for rows in fold.values()]
            assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    if len(plan.folds) > 1:
        assert sorted(i for fold in plan.folds for i in fold["test"]) == list(range(len(records)))


def _label_shares(records: list[dict], rows: list[int]) -> dict[str, float]:
    counts = Counter(records[i]["label"] for i in rows)
    return {label: counts[label] / len(rows) for label in sorted({r["label"] for r in records})}


def test_speaker_split_is_disjoint_deterministic_and_mixes_genders():
    records = _speakers(9)
    cfg = SplitConfig(validation=0.2, test=0.2, seed=3)
    plan = make_splits(records, cfg)
    assert (plan.scheme, plan.note) == ("speaker", "speaker-independent: no speaker in two splits")
    assert len(plan.folds) == 1
    _check_folds(records, plan, "speaker")
    assert make_splits(records, cfg) == plan
    for n, seed in product((9, 10), range(8)):
        records = _speakers(n)
        fold = make_splits(records, SplitConfig(validation=0.2, test=0.2, seed=seed)).folds[0]
        for name in ("validation", "test"):
            assert len({records[i]["speaker"] for i in fold[name]}) == 2
            assert {records[i]["gender"] for i in fold[name]} == {"m", "f"}


def test_seeds_change_the_plan():
    records = _speakers(9)
    plans = {str(make_splits(records, SplitConfig(seed=seed)).folds) for seed in range(4)}
    assert len(plans) > 1


def test_splits_follow_label_mix_and_shares():
    records = _skewed()
    overall = _label_shares(records, list(range(len(records))))
    for seed in range(4):
        fold = make_splits(records, SplitConfig(validation=0.15, test=0.2, seed=seed)).folds[0]
        for name, share in zip(SPLITS, (0.65, 0.15, 0.2)):
            assert abs(len(fold[name]) / len(records) - share) < 0.05
            shares = _label_shares(records, fold[name])
            assert all(abs(shares[label] - overall[label]) < 0.08 for label in overall), (seed, name, shares)


def test_kfold_is_speaker_disjoint_stratified_and_covers_every_clip():
    records = _skewed()
    overall = _label_shares(records, list(range(len(records))))
    plan = make_splits(records, SplitConfig(validation=0.15, seed=1, folds="3"))
    assert len(plan.folds) == 3
    _check_folds(records, plan, "speaker")
    for fold in plan.folds:
        assert abs(len(fold["test"]) / len(records) - 1 / 3) < 0.05
        assert abs(len(fold["validation"]) / len(records) - 0.15) < 0.06
        shares = _label_shares(records, fold["test"])
        assert all(abs(shares[label] - overall[label]) < 0.08 for label in overall)
    assert make_splits(records, SplitConfig(validation=0.15, seed=1, folds="3")) == plan


def test_leave_one_speaker_out():
    records = _speakers(6)
    plan = make_splits(records, SplitConfig(folds="loso"))
    assert len(plan.folds) == 6
    _check_folds(records, plan, "speaker")
    assert [{records[i]["speaker"] for i in fold["test"]} for fold in plan.folds] == [
        {f"s{s:02d}"} for s in range(6)
    ]


def test_one_speaker_splits_by_sentence():
    records = [
        {
            "path": f"{style}/{n}",
            "label": style,
            "speaker": "thorsten",
            "gender": "male",
            "sentence": f"id{n}",
        }
        for n in range(20)
        for style in ("amused", "angry", "neutral", "sleepy")
        if (n + len(style)) % 7  # a few sentences lack a style
    ]
    plan = make_splits(records, SplitConfig())
    assert plan.scheme == "sentence"
    assert plan.note.startswith(
        "one speaker only: a speaker-independent split is impossible; split by sentence"
    )
    _check_folds(records, plan, "sentence")
    _check_folds(records, make_splits(records, SplitConfig(folds="4")), "sentence")
    two = [{**r, "speaker": f"spk{i % 2}"} for i, r in enumerate(records)]
    assert make_splits(two, SplitConfig()).note.startswith("only 2 speakers:")
    assert make_splits(records, SplitConfig(scheme="clip")).scheme == "clip"


def test_clip_fallback_is_label_stratified():
    records = [{"path": str(i), "label": f"l{i % 3}", "speaker": None} for i in range(60)]
    plan = make_splits(records, SplitConfig(validation=0.15, test=0.2))
    assert plan.scheme == "clip" and "speakers unknown and sentences unknown" in plan.note
    _check_folds(records, plan, None)
    assert [len(plan.folds[0][name]) for name in SPLITS] == [39, 9, 12]
    assert all(n == 4 for n in Counter(records[i]["label"] for i in plan.folds[0]["test"]).values())
    plan = make_splits(records, SplitConfig(folds="4"))
    _check_folds(records, plan, None)
    assert all(
        Counter(records[i]["label"] for i in fold["test"]) == dict.fromkeys(("l0", "l1", "l2"), 5)
        for fold in plan.folds
    )


@pytest.mark.parametrize(
    "records, cfg, match",
    [
        (_speakers(2), SplitConfig(scheme="speaker"), "cannot split by speaker: only 2 speakers"),
        (_speakers(4)[:-1] + [{"path": "x", "label": "l0"}], SplitConfig(scheme="speaker"), "1 clip"),
        (_speakers(4), SplitConfig(scheme="sentence"), "cannot split by sentence: sentences unknown"),
        (_speakers(4), SplitConfig(scheme="random"), "unknown split scheme"),
        (_speakers(4), SplitConfig(folds="5"), "from 2 to 4"),
        (_speakers(4), SplitConfig(folds="0"), "folds must be"),
        (_speakers(4), SplitConfig(folds="two"), "folds must be"),
        (_speakers(3), SplitConfig(folds="2"), "too few for training and validation"),
        (_speakers(4), SplitConfig(scheme="clip", folds="loso"), "loso"),
        (_speakers(4), SplitConfig(validation=0.5, test=0.5), "sum below 1"),
        ([{"path": "a", "label": "x"}, {"path": "b", "label": "y"}], SplitConfig(), "2 clip"),
    ],
)
def test_impossible_requests_are_user_errors(records, cfg, match):
    with pytest.raises(SerError, match=match):
        make_splits(records, cfg)


def test_the_same_records_give_the_same_splits_in_every_python_process():
    """Ties between equally good assignments are broken in a fixed order, not in the order string
    hashing gives, which changes from one interpreter to the next (PYTHONHASHSEED)."""
    code = (
        "import json; from pipeline.data.splits import SplitConfig, make_splits; "
        "emotions = ['angry', 'calm', 'happy', 'sad', 'neutral', 'fearful', 'disgust', 'surprised']; "
        "records = [{'path': f'{s}/{e}/{k}', 'label': e, 'speaker': f's{s:02d}', "
        "'gender': 'female' if s % 2 else 'male'} for s in range(24) for e in emotions "
        "for k in range(4 if e == 'neutral' else 8)]; "
        "print(json.dumps(make_splits(records, SplitConfig(folds='5')).folds))"
    )
    plans = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in (1, 2, 3)
    }
    assert len(plans) == 1
