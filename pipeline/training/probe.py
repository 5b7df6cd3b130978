"""`ser probe`: a frozen backbone, a learned weighted sum of its layers and a small head (SUPERB style).

The classifier with `use_weighted_layer_sum` computes `classifier(projector(masked time-mean of
sum_l w_l h_l))`; every step after the backbone is affine or a mean, so it equals
`classifier(projector(sum_l w_l mean_t h_l))`. The backbone therefore runs once per clip, its
per-layer time-means are cached under `<data>/probe/<key>/`, and only `layer_weights`, `projector`
and `classifier` are trained, on those features. `best/` is an ordinary checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import set_seed
from safetensors.torch import load_file, save
from tqdm.auto import tqdm

from ..config import Config
from ..errors import SerError
from ..files import write_file_atomic
from ..metrics import classification_metrics
from ..model import build_model, takes_waveform
from .baseline import reported_baselines
from .checkpoint import save_model_dir
from .setup import load_fold, loss_of

SPLITS = ("train", "validation", "test")


def head_logits(model, features: torch.Tensor) -> torch.Tensor:
    """The model's logits from cached features [clips, layers + 1, hidden]."""
    weights = torch.softmax(model.layer_weights, dim=-1)
    return model.classifier(model.projector(torch.einsum("l,nlh->nh", weights, features)))


def _cache_key(model, cfg: Config, fold: int, dataset) -> str:
    """Changes with the backbone (config and weights), the prepared data, the fold and the crop."""
    digest = hashlib.sha256(model.config.to_json_string().encode())
    for name, tensor in sorted(getattr(model, model.base_model_prefix).state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    summary = Path(cfg.data.path) / "summary.json"
    rows = {s: [list(dataset[s]["path"]), list(dataset[s]["duration"])] for s in SPLITS}
    inputs = json.loads(summary.read_text()).get("inputs") if summary.is_file() else None
    digest.update(json.dumps([inputs, fold, cfg.data.max_eval_seconds, rows]).encode())
    return digest.hexdigest()[:16]


@torch.inference_mode()
def _extract(model, ds, extractor, max_seconds: float, batch_size: int) -> torch.Tensor:
    """Masked time-mean of every hidden state of each (centre-cropped) clip: [clips, layers + 1, hidden]."""
    base, device = getattr(model, model.base_model_prefix), model.device
    masked = bool(extractor.return_attention_mask)  # else (group norm) clip by clip: padding would leak
    step, max_len = (batch_size if masked else 1), int(max_seconds * extractor.sampling_rate)
    order = np.argsort(list(ds["duration"]), kind="stable")  # similar lengths together: little padding
    audio = ds.with_format("numpy", columns=["input_values"])
    out = torch.empty(len(ds), model.config.num_hidden_layers + 1, model.config.hidden_size)
    for start in tqdm(range(0, len(ds), step), desc="probe features"):
        rows = torch.from_numpy(order[start : start + step])
        waves = [audio[int(i)]["input_values"] for i in rows]
        waves = [w[max(w.size - max_len, 0) // 2 :][:max_len] for w in waves]  # the evaluation crop
        batch = extractor.pad({"input_values": waves}, return_attention_mask=masked, return_tensors="pt")
        batch = batch.to(device)
        states = base(**batch, output_hidden_states=True).hidden_states
        if masked:  # a private transformers method: holds for transformers >=5.0,<6 (checked 5.24)
            frames = model._get_feature_vector_attention_mask(states[0].shape[1], batch["attention_mask"])
        else:
            frames = torch.ones(states[0].shape[:2], device=device)
        frames = frames.to(states[0].dtype)
        sums = torch.stack([torch.einsum("bth,bt->bh", h, frames) for h in states], dim=1)
        out[rows] = (sums / frames.sum(1)[:, None, None]).float().cpu()
    return out


def _load_features(model, dataset, extractor, cfg: Config, fold: int) -> tuple[Path, dict]:
    """{split: features} from the cache, extracting (and caching) the splits not in it yet."""
    cache = Path(cfg.data.path) / "probe" / _cache_key(model, cfg, fold, dataset)
    cache.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        path = cache / f"{split}.safetensors"
        if path.is_file():
            print(f"probe features of {split}: cached in {cache}")
        else:
            features = _extract(
                model, dataset[split], extractor, cfg.data.max_eval_seconds, cfg.train.batch_size
            )
            write_file_atomic(path, save({"features": features}))
    return cache, {s: load_file(cache / f"{s}.safetensors")["features"].to(model.device) for s in SPLITS}


def _fit_head(model, x: dict, y: dict, labels: list[str], cfg: Config) -> tuple[int, list[dict]]:
    """Trains the layer weights and head, leaves the best epoch's (by validation UAR) in `model`."""
    head = [model.layer_weights, *model.projector.parameters(), *model.classifier.parameters()]
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for p in head if p.ndim >= 2], "weight_decay": cfg.train.weight_decay},
            {"params": [p for p in head if p.ndim < 2], "weight_decay": 0.0},
        ],
        lr=cfg.train.head_learning_rate or cfg.train.learning_rate,
    )
    history, best_uar, best_epoch, best = [], -1.0, 0, []
    epochs = cfg.train.epochs_for(math.ceil(len(y["train"]) / cfg.train.batch_size))
    for epoch in range(1, epochs + 1):
        losses = []
        for idx in torch.randperm(len(y["train"]), device=model.device).split(cfg.train.batch_size):
            loss = loss_of(head_logits(model, x["train"][idx]), y["train"][idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        with torch.no_grad():
            logits = head_logits(model, x["validation"])
        val_loss = loss_of(logits, y["validation"]).item()
        val_uar = classification_metrics(y["validation"].cpu(), logits.argmax(-1).cpu(), labels)["uar"]
        history.append(
            {"epoch": epoch, "train_loss": float(np.mean(losses)), "val_loss": val_loss, "val_uar": val_uar}
        )
        print(f"epoch {epoch}: train loss {history[-1]['train_loss']:.4f} · val UAR {val_uar:.3f}")
        if val_uar > best_uar:
            best_uar, best_epoch, best = val_uar, epoch, [p.detach().clone() for p in head]
    with torch.no_grad():
        for param, value in zip(head, best):
            param.copy_(value)
    return best_epoch, history


def train_probe(cfg: Config, fold: int = 0) -> dict:
    """Train the layer weights and head on the frozen backbone's cached features; write `best/` and
    `metrics.json` to `train.output_dir`."""
    dataset, labels, extractor = load_fold(cfg, fold)
    if not takes_waveform(extractor):
        raise SerError(
            "ser probe reads models of the waveform (wav2vec2, HuBERT, WavLM); "
            f"{type(extractor).__name__} computes features"
        )
    set_seed(cfg.train.seed)
    model = build_model(cfg.model, labels, use_weighted_layer_sum=True)
    if not all(
        hasattr(model, n) for n in ("layer_weights", "projector", "classifier", model.base_model_prefix)
    ):
        raise SerError(
            f"{type(model).__name__} has no weighted layer sum (use_weighted_layer_sum): cannot probe it"
        )
    # Uniform start. Loading a pretrained wav2vec2 / WavLM checkpoint leaves it uninitialised memory.
    torch.nn.init.zeros_(model.layer_weights)
    model.eval().to(PartialState().device)
    cache, x = _load_features(model, dataset, extractor, cfg, fold)
    ids = {label: i for i, label in enumerate(labels)}
    y = {s: torch.tensor([ids[v] for v in dataset[s]["label"]], device=model.device) for s in SPLITS}
    best_epoch, history = _fit_head(model, x, y, labels, cfg)
    out = Path(cfg.train.output_dir)
    save_model_dir(model, extractor, out / "best")
    results = {
        "mode": "probe",
        "fold": fold,
        "best_epoch": best_epoch,
        "history": history,
        "cache": str(cache),
    }
    with torch.no_grad():
        for split in ("validation", "test"):
            if len(dataset[split]):
                predicted = head_logits(model, x[split]).argmax(-1).cpu()
                results[split] = classification_metrics(y[split].cpu(), predicted, labels)
        results["layer_weights"] = torch.softmax(model.layer_weights, -1).tolist()
    results["baselines"] = reported_baselines(cfg.data.path, fold)
    results["config"] = cfg.to_dict()
    write_file_atomic(out / "metrics.json", json.dumps(results, indent=2))
    if "test" in results:
        write_file_atomic(out / "best" / "metrics.json", json.dumps(results["test"], indent=2))
    return results
