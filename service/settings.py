"""The service's settings, read once from the environment."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from pipeline.commands import BACKENDS, PRECISIONS
from pipeline.errors import ConfigError
from pipeline.inference.backends import default_device
from pipeline.inference.export import served_tag


def _env_number(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    try:
        number = float(value) if value else default
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not 0 <= number < math.inf:  # nan fails this too
        raise ConfigError(f"{name} must be a finite number, 0 or more, got {value!r}")
    return number


def _env_choice(name: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name, "") or choices[0]
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    model_tag: str  # SER_MODEL_TAG: the BentoML model store tag (default ser-emotion:latest)
    max_seconds: float  # SER_MAX_SECONDS: longer clips get 422
    max_upload_bytes: int  # SER_MAX_UPLOAD_MB: larger request bodies get 413
    max_batch_size: int  # SER_MAX_BATCH_SIZE: clips per batched model call (1: no batching)
    max_latency_ms: int  # SER_MAX_LATENCY_MS: a clip waits at most this long for the model, then 503
    precision: str  # SER_PRECISION: auto (bf16 for large models where native, else fp32), fp32, bf16, int8
    device: str  # SER_DEVICE: where the model runs (default: cuda when a GPU is visible, else cpu)
    backend: str = "auto"  # SER_BACKEND: auto (onnx on the CPU, torch on a GPU), onnx, torch
    threads: int = 4  # SER_THREADS: request threads (decoding, front end, functionals, answers)
    # The streaming endpoint (/stream): beyond each bound a stream is closed, with the reason.
    stream_max_open: int = 8  # SER_STREAM_MAX_OPEN: streams open at once
    stream_max_seconds: float = 600.0  # SER_STREAM_MAX_SECONDS: audio per stream
    stream_idle_s: float = 10.0  # SER_STREAM_IDLE_S: seconds without a message
    stream_max_message_bytes: int = 2**18  # SER_STREAM_MAX_MESSAGE_KB: one message (256 KiB)

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            model_tag=served_tag(),
            max_seconds=_env_number("SER_MAX_SECONDS", 60.0),
            max_upload_bytes=int(_env_number("SER_MAX_UPLOAD_MB", 20) * 2**20),
            max_batch_size=int(_env_number("SER_MAX_BATCH_SIZE", 16)),
            max_latency_ms=int(_env_number("SER_MAX_LATENCY_MS", 60_000)),
            precision=_env_choice("SER_PRECISION", PRECISIONS),
            device=os.environ.get("SER_DEVICE") or default_device(),
            backend=_env_choice("SER_BACKEND", BACKENDS),
            threads=int(_env_number("SER_THREADS", 4)),
            stream_max_open=int(_env_number("SER_STREAM_MAX_OPEN", 8)),
            stream_max_seconds=_env_number("SER_STREAM_MAX_SECONDS", 600.0),
            stream_idle_s=_env_number("SER_STREAM_IDLE_S", 10.0),
            stream_max_message_bytes=int(_env_number("SER_STREAM_MAX_MESSAGE_KB", 256) * 2**10),
        )

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"SER_{name.upper()} must be 1 or more, got {getattr(self, name)}")


SETTINGS = Settings.from_env()
