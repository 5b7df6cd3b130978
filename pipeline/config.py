"""Run configuration: dataclasses loaded from YAML, overridden by `section.key=value` strings."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Any, Union

import yaml

from .errors import ConfigError, first_line

# Inference precision of `ser predict/evaluate` and the service: auto = bf16 for models of 10 M
# parameters or more where the hardware runs it natively (AVX512-BF16/AMX CPUs, CUDA GPUs with bf16),
# else fp32; int8 = dynamic int8 linear layers (CPU).
PRECISIONS = ("auto", "fp32", "bf16", "int8")


@dataclass
class DataConfig:
    """Where the prepared data lives and how clips are cut for training."""

    path: str = "runs/data"
    fold: int | None = None  # which fold of the prepared splits; None = all of them
    max_train_seconds: float = 3.0  # random crop of longer clips during training
    max_eval_seconds: float = 10.0  # centre crop at evaluation (bounds memory)


@dataclass
class ModelConfig:
    """The backbone: a Hub id / local directory, or (null) a small wav2vec2 built from `small`."""

    backbone: str | None = None
    trust_remote_code: bool = False
    freeze_feature_encoder: bool = False
    dropout: float | None = None  # hidden, attention and final dropout; None = the backbone's own
    small: dict[str, Any] = field(
        default_factory=lambda: {
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 128,
            "conv_dim": [32, 32, 32, 32, 32, 32, 32],
            "num_conv_pos_embeddings": 16,
            "num_conv_pos_embedding_groups": 4,
            "feat_extract_norm": "layer",
            "classifier_proj_size": 64,
            "mask_time_prob": 0.0,
        }
    )


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping of the training loop."""

    output_dir: str = "runs/default"
    trainer: str = "accelerate"  # accelerate (our loop) | hf (transformers.Trainer)
    epochs: int = 20
    batch_size: int = 16
    learning_rate: float = 2e-3  # the backbone's
    head_learning_rate: float | None = None  # defaults to learning_rate
    weight_decay: float = 0.01
    scheduler: str = "linear"  # linear | cosine | constant, after the warm-up
    warmup_ratio: float = 0.1
    gradient_accumulation_steps: int = 1
    max_grad_norm: float = 1.0
    freeze_backbone_steps: int = 0  # train only the head for the first N optimizer steps
    class_weights: str = "none"  # none | balanced (inverse class frequency in the loss)
    # Batch clips of similar duration: far less padding, but where duration tracks the emotion (the
    # demo corpus: sad clips are the longest) batches become single-emotion and training fails.
    group_by_length: bool = False
    mixed_precision: str | None = None  # no | fp16 | bf16; None = what `accelerate launch` says
    eval_every: int = 0  # validate every N optimizer steps; 0 = after each epoch
    early_stopping_patience: int = 0  # validations without UAR gain before stopping; 0 = off
    save_every: int = 0  # full-state checkpoint every N steps; 0 = at each validation
    keep_checkpoints: int = 2  # full-state checkpoints kept for --resume
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])  # Accelerate trackers
    sanity_report: bool = False  # print shapes, ranges, label balance and gradient norms first
    seed: int = 0
    num_workers: int = 0


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _allowed_types(section: Any, key: str) -> tuple[type, ...]:
    hint = typing.get_type_hints(type(section))[key]
    return tuple(
        typing.get_origin(t) or t
        for t in (typing.get_args(hint) if typing.get_origin(hint) in (Union, UnionType) else (hint,))
    )


def _typed(value: Any, section: Any, key: str, name: str) -> Any:
    """`value` checked against the field's annotation (numbers in YAML 1.1 strings like 3e-4 accepted)."""
    allowed = _allowed_types(section, key)
    if isinstance(value, bool) and str in allowed and bool not in allowed:
        value = "yes" if value else "no"  # YAML 1.1 reads yes/no (on/off) as booleans
    if float in allowed and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(value, allowed) and (isinstance(value, bool) <= (bool in allowed)):
        return value
    names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
    raise ConfigError(f"config key {name!r} expects {names}, got {value!r}")


def _apply(section: Any, values: dict[str, Any], prefix: str) -> None:
    names = {f.name for f in dataclasses.fields(section)}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"unknown config key '{prefix}{key}'; known: {', '.join(sorted(names))}")
        current = getattr(section, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"config section '{prefix}{key}' must be a mapping")
            _apply(current, value, f"{prefix}{key}.")
        else:
            setattr(section, key, _typed(value, section, key, prefix + key))


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Defaults, then the YAML file, then `section.key=value` overrides."""
    config = Config()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
        if not isinstance(values, dict):
            raise ConfigError(f"config file {path} must hold a mapping")
        _apply(config, values, "")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        *parents, leaf = key.split(".")
        section = config
        for name in parents:
            if not dataclasses.is_dataclass(getattr(section, name, None)):
                raise ConfigError(f"unknown config section {name!r} in {item!r}")
            section = getattr(section, name)
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r} is not valid YAML: {first_line(err)}") from err
        _apply(section, {leaf: parsed}, ".".join(parents) + ".")
    return config
