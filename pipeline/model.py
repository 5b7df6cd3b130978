"""Builds the audio classifier: a pretrained backbone (Hub id or local dir) or a small model of a
local config (`model.architecture`: wav2vec2 on the raw waveform, or wav2vec2-bert on log-mel
filter banks)."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModelForAudioClassification,
    PretrainedConfig,
    PreTrainedModel,
    SeamlessM4TFeatureExtractor,
    Wav2Vec2FeatureExtractor,
)

from .config import TARGET_SAMPLING_RATE, ModelConfig
from .errors import ConfigError, SerError, first_line
from .small_models import SMALL_MODELS

SAFETENSORS_NAMES = ("model.safetensors", "model.safetensors.index.json")
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}


def _reason(err: Exception) -> str:
    """The first line of a loading error, or the way out where it is custom code."""
    if "trust_remote_code" in str(err):
        return "it contains custom code, which runs only with model.trust_remote_code=true (if you trust it)"
    return first_line(err)


def label_maps(labels: list[str]) -> tuple[dict[int, str], dict[str, int]]:
    id2label = dict(enumerate(labels))
    return id2label, {name: i for i, name in id2label.items()}


def build_feature_extractor(cfg: ModelConfig):
    """The backbone's own feature extractor, or one matching the small model."""
    if cfg.backbone:
        try:
            return AutoFeatureExtractor.from_pretrained(cfg.backbone, trust_remote_code=cfg.trust_remote_code)
        except (OSError, ValueError) as err:  # ValueError: custom code, refused without trust_remote_code
            raise ConfigError(
                f"cannot load feature extractor of backbone {cfg.backbone!r}: {_reason(err)}"
            ) from err
    if cfg.architecture == "wav2vec2-bert":  # 80 log-mel filter banks, normalised per clip
        return SeamlessM4TFeatureExtractor(sampling_rate=TARGET_SAMPLING_RATE, return_attention_mask=True)
    # The small wav2vec2 uses layer norm in its feature encoder, so it takes an attention mask and
    # padded batches give the same answers as single clips.
    return Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=TARGET_SAMPLING_RATE,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    )


def takes_waveform(extractor) -> bool:
    """Whether the model reads the (normalised) waveform itself, rather than features computed from
    it (log-mel filter banks): prepared data then stores the normalised waveform."""
    return extractor.model_input_names[0] == "input_values"


DROPOUT_KEYS = (
    "hidden_dropout",
    "attention_dropout",
    "activation_dropout",
    "final_dropout",
)  # wav2vec2 family


def build_model(cfg: ModelConfig, labels: list[str], **config_overrides) -> PreTrainedModel:
    """An AutoModelForAudioClassification with a fresh head for `labels` (`config_overrides` go into
    its config, e.g. `use_weighted_layer_sum=True`)."""
    id2label, label2id = label_maps(labels)
    if cfg.dropout is not None:
        config_overrides = {**dict.fromkeys(DROPOUT_KEYS, cfg.dropout), **config_overrides}
    if cfg.backbone:
        try:
            config = AutoConfig.from_pretrained(
                cfg.backbone,
                num_labels=len(labels),
                id2label=id2label,
                label2id=label2id,
                trust_remote_code=cfg.trust_remote_code,
                **config_overrides,
            )
            model = AutoModelForAudioClassification.from_pretrained(
                cfg.backbone,
                config=config,
                ignore_mismatched_sizes=True,
                trust_remote_code=cfg.trust_remote_code,
                use_safetensors=True,
            )
        except (OSError, ValueError) as err:  # ValueError: custom code, refused without trust_remote_code
            raise ConfigError(f"cannot load backbone {cfg.backbone!r}: {_reason(err)}") from err
    else:
        values = {**SMALL_MODELS[cfg.architecture], **cfg.small, **config_overrides}
        defaults = AutoConfig.for_model(cfg.architecture)
        unknown = sorted(set(cfg.small) - set(defaults.to_dict()))
        if unknown:  # from_config would keep a misspelt key as an attribute nothing reads
            raise ConfigError(
                f"unknown model.small key {unknown[0]!r}: not a {type(defaults).__name__} setting"
            )
        try:
            config = AutoConfig.for_model(
                cfg.architecture, num_labels=len(labels), id2label=id2label, label2id=label2id, **values
            )
        except (TypeError, ValueError) as err:
            raise ConfigError(f"bad model.small setting: {err}") from err
        model = AutoModelForAudioClassification.from_config(config)
    if cfg.freeze_feature_encoder and hasattr(model, "freeze_feature_encoder"):
        model.freeze_feature_encoder()
    return model


def model_labels(config: PretrainedConfig) -> list[str]:
    """The class names of a classifier's config, in output order."""
    return [config.id2label[i] for i in range(config.num_labels)]


def load_checkpoint(checkpoint: str | Path) -> PreTrainedModel:
    """A fine-tuned classifier directory (`ser train`'s `best/`). Weights come from safetensors only: a
    directory with only pickled weights (`pytorch_model.bin`) is refused without opening them, and so is
    one that asks for custom code (`auto_map`); nothing in a checkpoint can execute code."""
    path = Path(checkpoint)
    if not (path / "config.json").is_file():
        raise SerError(f"not a checkpoint directory (no config.json): {path}")
    if not any((path / name).is_file() for name in SAFETENSORS_NAMES):
        pickled = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
        found = f" (found {', '.join(pickled)}: pickle files are never loaded)" if pickled else ""
        raise SerError(f"no safetensors weights (model.safetensors) in {path}{found}")
    for name in ("config.json", "preprocessor_config.json"):
        try:
            custom = "auto_map" in json.loads((path / name).read_text())
        except (OSError, ValueError):
            custom = False  # absent or unreadable: from_pretrained reports it
        if custom:
            raise SerError(f"{path / name} asks for custom code (auto_map): checkpoints may not run code")
    try:
        return AutoModelForAudioClassification.from_pretrained(
            path, use_safetensors=True, trust_remote_code=False
        )
    except (OSError, ValueError) as err:
        raise SerError(f"cannot load checkpoint {path}: {_reason(err)}") from err
