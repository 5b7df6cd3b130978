"""User errors end as one readable line and a non-zero exit."""

from __future__ import annotations

import pytest
from conftest import ser


@pytest.mark.parametrize(
    "args, message",
    [
        (["predict", "--checkpoint", "{tmp}", "{tmp}/missing.wav"], "file not found"),
        (["prepare", "--corpus", "nosuch", "--data-dir", "{tmp}", "--out", "{tmp}/o"], "invalid choice"),
        (["prepare", "--data-dir", "{tmp}/missing", "--out", "{tmp}/o"], "data directory not found"),
        (["train", "--data", "{tmp}", "train.epochz=1"], "unknown config key 'train.epochz'"),
        (["train", "--config", "{tmp}/none.yaml"], "config file not found"),
        (["train", "--data", "{tmp}"], "no prepared data"),
        (["evaluate", "--checkpoint", "{tmp}", "--data", "{tmp}"], "no prepared data"),
        (["export", "--checkpoint", "{tmp}"], "not a checkpoint directory"),
    ],
)
def test_errors_are_one_line(tmp_path, args, message):
    done = ser(*(a.format(tmp=tmp_path) for a in args), check=False)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert message in lines[0]
