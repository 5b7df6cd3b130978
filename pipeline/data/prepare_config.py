"""What `ser prepare` reads, decodes and splits, and what `ser synth` makes: dataclasses, the one
source of those commands' defaults and help (their flags are derived from them, `pipeline.arguments`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..arguments import option
from ..config import ModelConfig
from .corpora import READERS
from .splits import SplitConfig


def model_field(name: str, help: str) -> Any:
    """A field with the default and choices of `ModelConfig`'s field `name` (declared once, there)."""
    declared = ModelConfig.__dataclass_fields__[name]
    return option(declared.default, help, choices=declared.metadata.get("choices"))


@dataclass
class DecodeConfig:
    """Everything that changes the decoded audio (and so the cache key)."""

    min_seconds: float = option(0.2, "shorter clips are left out")
    max_seconds: float = option(30.0, "longer clips are cropped or left out (--long-clips)")
    long_clips: str = option(
        "crop", "crop: keep the first --max-seconds; skip: leave the clip out", choices=("crop", "skip")
    )
    trim_silence: bool = option(False, "drop leading and trailing silence")
    trim_top_db: float = option(40.0, "silence is this many dB below the clip's peak")


@dataclass
class PrepareConfig:
    """What `ser prepare` reads, keeps, decodes and how it splits."""

    corpora: list[str] = option(
        factory=lambda: ["auto"],
        flag="--corpus",
        choices=("auto", *READERS),
        words=True,
        help="one reader for all data dirs, or one per data dir",
    )
    labels: list[str] = option(
        factory=list, help="keep only these labels (e.g. neutral,happy,sad,angry); none: all"
    )
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    max_bad_fraction: float = option(0.2, "stop above this share of unusable files")
    num_proc: int = option(1, "decoding processes")
    # The model whose feature extractor normalises the audio: ModelConfig's two fields, as declared there.
    backbone: str | None = model_field(
        "backbone", "apply this model's feature extractor; none = the small model's"
    )
    architecture: str = model_field(
        "architecture", "without --backbone: the small model whose feature extractor to apply"
    )
    splits: SplitConfig = field(default_factory=SplitConfig)


@dataclass
class SynthConfig:
    """The size and seed of the demo corpus (`ser synth`)."""

    speakers: int = option(40, "synthetic speakers (half female, half male)")
    utterances: int = option(6, "clips per speaker and emotion")
    seed: int = option(0, "seeds the speakers and every clip")
