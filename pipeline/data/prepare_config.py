"""What `ser prepare` reads, decodes and splits, and what `ser synth` makes: dataclasses, the one
source of those commands' defaults and help (their flags are derived from them, `pipeline.arguments`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..arguments import option
from ..small_models import SMALL_MODELS
from .corpora import READERS
from .splits import SplitConfig


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
    backbone: str | None = option(None, "apply this model's feature extractor; none = the small model's")
    architecture: str = option(
        "wav2vec2-bert",
        "without --backbone: the small model whose feature extractor to apply",
        choices=tuple(SMALL_MODELS),
    )
    splits: SplitConfig = field(default_factory=SplitConfig)


@dataclass
class SynthConfig:
    """The size and seed of the demo corpus (`ser synth`)."""

    speakers: int = option(40, "synthetic speakers (half female, half male)")
    utterances: int = option(6, "clips per speaker and emotion")
    seed: int = option(0, "seeds the speakers and every clip")
