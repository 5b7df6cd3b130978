"""Run configuration: dataclasses, the one source of defaults and help (flags are derived from them,
`pipeline.arguments`), loaded from YAML and overridden by flags and `section.key=value` strings."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Any, Union

import yaml

from .arguments import option
from .errors import ConfigError, first_line
from .functionals import FEATURE_SETS
from .small_models import SMALL_MODELS

TRAINERS = ("accelerate", "hf")
SCHEDULES = ("linear", "cosine", "constant")
CLASS_WEIGHTS = ("none", "balanced")
KEPT = {"last": "the final weights", "best": "the best weights by validation UAR"}  # train.keep
MIXED_PRECISIONS = ("accelerate", "no", "fp16", "bf16")
TARGET_SAMPLING_RATE = 16_000  # what every model hears; audio at other rates is resampled to it
DEFAULT_EPOCHS = 30  # `train.epochs: null` trains at least this many (more for `train.min_steps`)


@dataclass
class DataConfig:
    """Where the prepared data lives and how clips are cut for training."""

    path: str = option(
        "runs/demo/data", "prepared data directory (`ser prepare --output-dir`)", flag="--data"
    )
    fold: int | None = option(
        None, "fold of the prepared splits to train; none = every fold, cross-validated"
    )
    max_train_seconds: float = option(3.0, "random crop of longer clips while training")
    speed_perturbation: float = option(
        0.1, "training clips play at a random speed in [1 - x, 1 + x] (tempo and pitch); 0 = off"
    )
    noise_snr_db: float | None = option(
        None, "training clips get white noise at a random SNR in [x, x + 20] dB; none = off"
    )
    mel_warp: float = option(
        0.25, "log-mel models: training clips' mel axis warped by a random factor in [1 - x, 1 + x] (VTLP)"
    )
    level_shift: float = option(
        0.7, "log-mel models: training clips' normalised features shifted by a random offset in [-x, x]"
    )
    max_eval_seconds: float = option(
        10.0,
        "centre crop of longer clips for validation while training; the final evaluation takes whole clips",
    )


@dataclass
class ModelConfig:
    """The backbone: a Hub id / local directory, or (none) a small model of `architecture`."""

    backbone: str | None = option(
        None, "Hub id (facebook/wav2vec2-base) or local directory; none = a small model, randomly initialised"
    )
    architecture: str = option(
        "wav2vec2-bert",
        "the small model's architecture (without a backbone): wav2vec2-bert (log-mel) or wav2vec2",
        choices=tuple(SMALL_MODELS),
    )
    trust_remote_code: bool = option(False, "run custom code a backbone ships (only backbones you trust)")
    freeze_feature_encoder: bool = option(False, "keep the convolutional feature encoder fixed")
    dropout: float | None = option(None, "hidden, attention and final dropout; none = the backbone's own")
    small: dict[str, Any] = option(
        factory=dict, help="config values of the small model over its architecture's (SMALL_MODELS)"
    )
    functionals: str | None = option(
        "compare",
        "fuse with a linear model on these clip functionals; none = the network alone",
        choices=(None, *FEATURE_SETS),
    )
    functionals_weight: float | None = option(None, "the network's share; none = fitted on validation")


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping of the training loop."""

    output_dir: str = option("runs/demo/model", "run directory: best/, checkpoints/, metrics.json, plots")
    trainer: str = option(
        "accelerate", "accelerate (our loop) or hf (transformers.Trainer)", choices=TRAINERS
    )
    epochs: int | None = option(
        None, "passes over the training data; none = 30, or more where needed for --min-steps optimizer steps"
    )
    min_steps: int = option(
        1200, "with --epochs none: the fewest optimizer steps (EmoDB's 20 steps an epoch: 60 epochs)"
    )
    batch_size: int = option(16, "clips per batch (per process)")
    learning_rate: float = option(2e-3, "the backbone's peak learning rate")
    head_learning_rate: float | None = option(None, "the new head's; none = learning_rate")
    weight_decay: float = option(0.01, "AdamW weight decay (not on biases and norms)")
    scheduler: str = option("linear", "decay after the warm-up", choices=SCHEDULES)
    warmup_ratio: float = option(0.3, "share of the steps with a linear warm-up")
    gradient_accumulation_steps: int = option(1, "batches per optimizer step")
    max_grad_norm: float = option(1.0, "gradient clipping")
    freeze_backbone_steps: int = option(0, "train only the head for the first N optimizer steps")
    class_weights: str = option("none", "balanced: loss weights 1 / class frequency", choices=CLASS_WEIGHTS)
    label_smoothing: float = option(
        0.1, "training targets: 1 - x on the clip's class plus x spread evenly over all classes; 0 = off"
    )
    group_by_length: bool = option(
        False,
        "batch clips of similar duration: less padding, but fails where duration gives the emotion away",
    )
    mixed_precision: str = option(
        "accelerate",
        "accelerate: what `accelerate launch` (or a saved config) says; no: fp32",
        choices=MIXED_PRECISIONS,
    )
    eval_every: int = option(0, "validate every N optimizer steps; 0 = after each epoch")
    keep: str = option(
        "last",
        "the weights best/ holds: last = the final ones, best = those of the best validation UAR",
        choices=tuple(KEPT),
    )
    early_stopping_patience: int = option(0, "stop after N validations without UAR gain (keep=best); 0 = off")
    save_every: int = option(0, "full-state checkpoint every N steps; 0 = at each validation")
    keep_checkpoints: int = option(2, "full-state checkpoints kept for --resume")
    report_to: list[str] = option(
        factory=lambda: ["tensorboard"],
        help="Accelerate trackers, comma-separated (tensorboard,mlflow); none: off",
    )
    sanity_report: bool = option(
        False, "print shapes, ranges, label balance and gradient norms first (sanity.json)", flag="--sanity"
    )
    calibrate: bool = option(True, "apply the temperature fitted on the validation speakers")
    seed: int = option(0, "seeds initialisation, batch order, crops and dropout")
    num_workers: int = option(0, "DataLoader worker processes")

    def epochs_for(self, batches: int) -> int:
        """The run's epochs when an epoch has `batches` batches: `epochs`, or for none the default
        number, raised where it makes fewer than `min_steps` optimizer steps."""
        if self.epochs is not None:
            return self.epochs
        steps = math.ceil(batches / self.gradient_accumulation_steps)
        return max(DEFAULT_EPOCHS, math.ceil(self.min_steps / steps))

    @property
    def accelerator_precision(self) -> str | None:
        """`Accelerator(mixed_precision=...)`: None leaves it to `accelerate launch`."""
        return None if self.mixed_precision == "accelerate" else self.mixed_precision


@dataclass
class Config:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def differences(cfg: Config) -> dict[str, dict[str, Any]]:
    """{section: {key: value}} of what `cfg` sets other than the defaults: a config file's content."""
    default, values = Config().to_dict(), cfg.to_dict()
    found = {s: {k: v for k, v in keys.items() if v != default[s][k]} for s, keys in values.items()}
    return {section: keys for section, keys in found.items() if keys}


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
        choices = {f.name: f for f in dataclasses.fields(section)}[key].metadata.get("choices")
        if choices and value not in choices:
            shown = ", ".join("null" if c is None else str(c) for c in choices)
            raise ConfigError(f"config key {name!r} must be one of {shown}, got {value!r}")
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


def load_config(
    path: str | Path | None = None, overrides: list[str] = (), flags: dict[str, Any] | None = None
) -> Config:
    """Defaults, then the YAML file, then `flags` ({"train.epochs": 5}), then `section.key=value`
    overrides."""
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
    for key, value in (flags or {}).items():
        section, _, leaf = key.rpartition(".")
        _apply(getattr(config, section), {leaf: value}, section + ".")
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
