"""One source of defaults: every command-line flag is derived from a configuration field, with the
field's default, and the YAML config only changes what it names."""

from __future__ import annotations

import argparse
import dataclasses
import re
from importlib.metadata import version

import pytest
import yaml

from pipeline.arguments import config_fields, field_default, from_flags
from pipeline.cli import _run_config, build_parser
from pipeline.commands import (
    EXAMPLES,
    BaselineArgs,
    EvaluateArgs,
    ExportArgs,
    PredictArgs,
    ServeArgs,
    TrainArgs,
)
from pipeline.config import Config, TrainConfig, differences, load_config
from pipeline.data.prepare_config import PrepareConfig, SynthConfig
from pipeline.errors import SerError
from pipeline.inference.answers import Options
from pipeline.inference.vad import VadConfig

pytestmark = pytest.mark.fast  # pure logic: `make test-fast`

DEFAULT_YAML = "configs/default.yaml"
# command -> the dataclass its flags come from
SOURCES = {
    "synth": [SynthConfig],
    "prepare": [PrepareConfig],
    "train": [Config, TrainArgs],
    "probe": [Config],
    "tune": [Config],
    "lr-find": [Config],
    "baseline": [BaselineArgs],
    "evaluate": [EvaluateArgs],
    "predict": [PredictArgs, Options, VadConfig],
    "export": [ExportArgs],
    "serve": [ServeArgs],
}
# one concept, one flag: the spellings used before (or elsewhere) that no subcommand may use
SYNONYMS = {
    "--output-dir": ["--out", "--output_dir", "--outdir", "--out-dir"],
    "--checkpoint": ["--model-dir", "--ckpt"],
    "--data": ["--data-path", "--dataset"],
    "--fold": ["--folds-to-run"],
}


def _commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


@pytest.mark.parametrize("command", sorted(SOURCES))
def test_every_flag_default_is_its_field_default(command):
    fields = {name: f for source in SOURCES[command] for name, f, _ in config_fields(source)}
    actions = {a.dest: a for a in _commands()[command]._actions}
    derived = [dest for dest in actions if dest in fields]
    for dest in derived:
        default = field_default(fields[dest])
        if default is dataclasses.MISSING:
            assert actions[dest].required, f"ser {command}: {dest}"
        else:
            assert actions[dest].default == default, f"ser {command}: {dest}"
        assert actions[dest].help.strip(), f"ser {command}: {dest} has no help"
    # every field has its flag, except mappings (YAML or `section.key=value` only) and the
    # run directory of tune and lr-find, which have their own required --output-dir
    missing = set(fields) - set(derived) - {"model.small"}
    assert missing == ({"train.output_dir"} if command in ("tune", "lr-find") else set())


def test_every_subcommand_is_covered_and_every_flag_has_help_a_default_and_its_one_name():
    commands = _commands()
    assert set(commands) == set(SOURCES) == set(EXAMPLES)
    for name, parser in commands.items():
        assert f"ser {name}" in parser.format_help() and "example:" in parser.format_help(), name
        for action in parser._actions:
            if action.dest in ("help",) or not action.option_strings and action.nargs != "*":
                continue
            text = action.help or ""
            assert re.search(r"\((default: .+|required)\)$", text), (
                f"ser {name} {action.option_strings}: {text!r}"
            )
            for canonical, others in SYNONYMS.items():
                assert not set(others) & set(action.option_strings), f"ser {name}: use {canonical}"
        flags = {o for a in parser._actions for o in a.option_strings}
        for shared in ("--precision", "--backend", "--fold"):
            if shared in flags:  # the same default wherever the flag is
                action = next(a for a in parser._actions if shared in a.option_strings)
                assert action.default == {"--precision": "auto", "--backend": "auto", "--fold": None}[shared]


def test_ser_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out == f"ser {version('ser-toolkit')}\n"


def test_no_default_is_typed_in_the_parser_for_a_configured_command():
    """The flags of `ser prepare` carry the dataclasses' defaults: parsing nothing gives them."""
    args = build_parser().parse_args(["prepare", "--data-dir", "c", "--output-dir", "o"])
    assert from_flags(PrepareConfig, args) == PrepareConfig()
    args = build_parser().parse_args(["synth", "--output-dir", "o"])
    assert from_flags(SynthConfig, args) == SynthConfig()
    args = build_parser().parse_args(["predict", "--checkpoint", "c", "f.wav"])
    assert from_flags(Options, args) == Options()


def test_train_with_and_without_the_default_config_is_the_same_run():
    parse = build_parser().parse_args
    without = _run_config(parse(["train"]))
    assert without == Config()
    assert _run_config(parse(["train", "--config", DEFAULT_YAML])) == without
    assert without.train.epochs is None and without.data.path == "runs/demo/data"  # the embedded default
    assert without.model.architecture == "wav2vec2-bert"


@pytest.mark.parametrize(
    "epochs, batches, accumulation, expected",
    [
        (None, 57, 1, 30),  # RAVDESS: 30 epochs make 1710 steps, more than min_steps
        (None, 40, 1, 30),  # exactly 1200
        (None, 20, 1, 60),  # EmoDB: 20 steps an epoch
        (None, 39, 1, 31),  # the demo corpus: 30 epochs would make 1170
        (None, 20, 2, 120),  # steps, not batches: 10 steps an epoch
        (None, 1, 1, 1200),
        (5, 20, 1, 5),  # asked for: exactly that
    ],
)
def test_epochs_none_trains_at_least_30_epochs_and_min_steps_steps(epochs, batches, accumulation, expected):
    train = TrainConfig(epochs=epochs, gradient_accumulation_steps=accumulation)
    assert train.min_steps == 1200
    assert train.epochs_for(batches) == expected


def test_flags_override_the_file_and_overrides_override_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 7\n  batch_size: 4\nmodel:\n  dropout: 0.2\n")
    parse = build_parser().parse_args
    cfg = _run_config(parse(["train", "--config", str(path), "--epochs", "5", "--dropout", "none"]))
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.model.dropout) == (5, 4, None)
    cfg = _run_config(parse(["train", "--config", str(path), "--epochs", "5", "train.epochs=6"]))
    assert cfg.train.epochs == 6
    # a flag given with the default's value still overrides the file
    assert _run_config(parse(["train", "--config", str(path), "--epochs", "40"])).train.epochs == 40


def test_flag_forms():
    parse = build_parser().parse_args
    cfg = _run_config(
        parse(["train", "--trainer", "hf", "--sanity", "--group-by-length", "--report-to", "none"])
    )
    assert (cfg.train.trainer, cfg.train.sanity_report, cfg.train.group_by_length) == ("hf", True, True)
    assert cfg.train.report_to == []
    # a list flag takes one value, so that the overrides after it stay overrides
    cfg = _run_config(
        parse(["train", "--no-group-by-length", "--report-to", "tensorboard,wandb", "train.seed=3"])
    )
    assert cfg.train.group_by_length is False and cfg.train.report_to == ["tensorboard", "wandb"]
    assert cfg.train.seed == 3
    args = parse(
        [
            "prepare",
            "--data-dir",
            "c",
            "d",
            "--output-dir",
            "o",
            "--labels",
            "sad,happy",
            "--corpus",
            "emodb",
            "tess",
        ]
    )
    assert from_flags(PrepareConfig, args).labels == ["sad", "happy"]
    assert from_flags(PrepareConfig, args).corpora == ["emodb", "tess"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--scheduler", "cubic"], "invalid choice: 'cubic'"),
        (["train", "--epochs", "many"], "invalid int value: 'many'"),
        (["prepare", "--data-dir", "c", "--output-dir", "o", "--split-by", "age"], "invalid choice: 'age'"),
        (
            ["prepare", "--data-dir", "c", "--output-dir", "o", "--corpus", "emodb", "iemocap"],
            "invalid choice: 'iemocap'",
        ),
    ],
)
def test_bad_flags_are_one_line_usage_errors(args, message, capsys):
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(args)
    err = capsys.readouterr().err
    assert done.value.code == 2 and message in err and err.count("\n") == 1


def test_choices_are_checked_in_yaml_too(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  scheduler: cubic\n")
    with pytest.raises(Exception, match="train.scheduler' must be one of linear, cosine, constant"):
        load_config(path)


def test_config_files_hold_only_what_differs_from_the_defaults(tmp_path):
    assert differences(load_config(DEFAULT_YAML)) == {}  # the rule configs/default.yaml states
    assert differences(load_config("configs/demo.yaml")) == {"train": {"epochs": 15}}  # make run's
    cfg = load_config(None, ["train.epochs=3", "model.dropout=0.1", "data.fold=1"])
    assert differences(cfg) == {"data": {"fold": 1}, "model": {"dropout": 0.1}, "train": {"epochs": 3}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(differences(cfg)))
    assert load_config(path) == cfg


def test_a_finished_run_is_not_written_over_without_overwrite(tmp_path):
    """`ser train` into a directory that holds a finished run stops with one line; --overwrite (or
    --resume) goes on; a directory without one is fine."""
    parse = build_parser().parse_args
    finished = tmp_path / "run"
    finished.mkdir()
    (finished / "metrics.json").write_text("{}")
    with pytest.raises(SerError, match=r"holds a finished run \(metrics.json\): add --overwrite"):
        _run_config(parse(["train", "--output-dir", str(finished)]))
    assert _run_config(
        parse(["train", "--output-dir", str(finished), "--overwrite"])
    ).train.output_dir == str(finished)
    assert _run_config(parse(["train", "--output-dir", str(finished), "--resume"]))
    assert _run_config(parse(["train", "--output-dir", str(tmp_path / "new")]))
    (tmp_path / "lr").mkdir()
    (tmp_path / "lr" / "lr_find.json").write_text("{}")
    with pytest.raises(SerError, match="lr_find.json"):
        _run_config(parse(["lr-find", "--output-dir", str(tmp_path / "lr")]))
