"""Builds the audio classifier: a pretrained backbone (Hub id or local dir) or a small local wav2vec2."""

from __future__ import annotations

from pathlib import Path

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModelForAudioClassification,
    PreTrainedModel,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2ForSequenceClassification,
)

from .audio import TARGET_SAMPLING_RATE
from .config import ModelConfig
from .errors import ConfigError, SerError


def label_maps(labels: list[str]) -> tuple[dict[int, str], dict[str, int]]:
    id2label = dict(enumerate(labels))
    return id2label, {name: i for i, name in id2label.items()}


def build_feature_extractor(cfg: ModelConfig):
    """The backbone's own feature extractor, or one matching the small model."""
    if cfg.backbone:
        try:
            return AutoFeatureExtractor.from_pretrained(cfg.backbone, trust_remote_code=cfg.trust_remote_code)
        except OSError as err:
            raise ConfigError(f"cannot load feature extractor of backbone {cfg.backbone!r}: {err}") from err
    # The small model uses layer norm in its feature encoder, so it takes an attention mask and
    # padded batches give the same answers as single clips.
    return Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=TARGET_SAMPLING_RATE,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    )


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
        except OSError as err:
            raise ConfigError(f"cannot load backbone {cfg.backbone!r}: {err}") from err
    else:
        try:
            config = Wav2Vec2Config(
                num_labels=len(labels),
                id2label=id2label,
                label2id=label2id,
                **{**cfg.small, **config_overrides},
            )
        except TypeError as err:
            raise ConfigError(f"bad model.small setting: {err}") from err
        model = Wav2Vec2ForSequenceClassification(config)
    if cfg.freeze_feature_encoder and hasattr(model, "freeze_feature_encoder"):
        model.freeze_feature_encoder()
    return model


def model_labels(model: PreTrainedModel) -> list[str]:
    """The class names in output order."""
    return [model.config.id2label[i] for i in range(model.config.num_labels)]


def load_checkpoint(checkpoint: str | Path) -> PreTrainedModel:
    """A fine-tuned classifier directory (`ser train`'s `best/`), weights from safetensors only."""
    path = Path(checkpoint)
    if not (path / "config.json").is_file():
        raise SerError(f"not a checkpoint directory (no config.json): {path}")
    return AutoModelForAudioClassification.from_pretrained(path, use_safetensors=True)
