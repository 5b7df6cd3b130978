"""Reusable test helpers: a tiny random checkpoint, synthetic audio and requests to the server (servers:
scripts/servers.py)."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

LABELS = ["angry", "happy", "neutral", "sad"]


def make_tiny_checkpoint(
    directory: str | Path, labels: list[str] = LABELS, seed: int = 0, norm: str = "layer"
) -> Path:
    """Write a randomly initialised small wav2vec2 classifier as a `save_pretrained` directory.

    `norm="group"` makes it wav2vec2-base style: a group-norm feature encoder run without an
    attention mask, whose answers zero padding would change.
    """
    import torch

    from pipeline.config import ModelConfig
    from pipeline.model import build_feature_extractor, build_model

    directory = Path(directory)
    torch.manual_seed(seed)
    cfg = ModelConfig(architecture="wav2vec2", small={"feat_extract_norm": norm})
    build_model(cfg, labels).save_pretrained(directory, safe_serialization=True)
    extractor = build_feature_extractor(cfg)
    extractor.return_attention_mask = norm == "layer"
    extractor.save_pretrained(directory)
    return directory


def tone(
    seconds: float = 1.0, sr: int = 16_000, channels: int = 1, f0: float = 180.0, seed: int = 0
) -> np.ndarray:
    """A harmonic tone with a little noise, shaped (frames,) or (frames, channels), float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    wave = 0.3 * wave / np.abs(wave).max() + 0.01 * rng.standard_normal(t.size)
    if channels > 1:
        wave = np.stack([wave * (1 - 0.2 * c) for c in range(channels)], axis=1)
    return wave.astype(np.float32)


def write_tone(path: str | Path, fmt: str | None = None, **tone_kwargs) -> Path:
    """Write `tone(**tone_kwargs)` to `path` (format from the suffix unless `fmt` is given)."""
    sr = tone_kwargs.get("sr", 16_000)
    sf.write(str(path), tone(**tone_kwargs), sr, format=fmt)
    return Path(path)


def wav_bytes(seconds: float = 1.0, **tone_kwargs) -> bytes:
    """`tone(seconds, **tone_kwargs)` as the bytes of a 16-bit WAV file."""
    buffer = io.BytesIO()
    sf.write(
        buffer, tone(seconds, **tone_kwargs), tone_kwargs.get("sr", 16_000), format="WAV", subtype="PCM_16"
    )
    return buffer.getvalue()


def post_audio(url: str, filename: str, content: bytes, field: str = "audio", **form) -> httpx.Response:
    """POST /classify with `content` as the file field `field` and `form` as text fields."""
    return httpx.post(
        f"{url}/classify",
        files={field: (filename, content, "application/octet-stream")},
        data={k: str(v) for k, v in form.items()},
        timeout=60,
    )


def post_array(url: str, samples, sampling_rate=16_000, **fields) -> httpx.Response:
    """POST /classify_array with a JSON body."""
    body = {"samples": samples, "sampling_rate": sampling_rate, **fields}
    return httpx.post(f"{url}/classify_array", json=body, timeout=60)


def assert_error(response: httpx.Response, status: int) -> str:
    """The answer is `status` with a JSON body {"error": "<non-empty message>"}; returns the message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"].strip(), body
    return body["error"]
