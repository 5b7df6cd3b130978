"""From prepared rows to padded batches: length-grouped batch order, crops and padding.

All randomness is a pure function of (seed, epoch, clip index), so an epoch can be replayed exactly
from any batch: that is what makes `--resume` end with the same metrics as an uninterrupted run.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..features import input_features
from ..model import takes_waveform
from .augment import Augmenter


class LengthGroupedBatches:
    """Batches of clips with similar lengths, in a shuffled order that is fixed per (seed, epoch).

    Training: shuffle, cut into windows of `window` batches, sort each window by length, then shuffle
    the batch order (the recipe of `transformers`' `group_by_length`). Evaluation: sorted by length.
    """

    def __init__(
        self, lengths, batch_size: int, *, shuffle: bool, group: bool = True, seed: int = 0, window: int = 50
    ):
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.shuffle, self.group = shuffle, group
        self.seed, self.window = seed, window
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch])
        n = len(self.lengths)
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        if not self.group:
            return [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        if not self.shuffle:
            order = np.argsort(-self.lengths, kind="stable")
            return [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        span = self.window * self.batch_size
        order = np.concatenate(
            [w[np.argsort(-self.lengths[w], kind="stable")] for w in np.split(order, range(span, n, span))]
        )
        batches = [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def __iter__(self):
        return (b.tolist() for b in self.batches())

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def padding_fraction(self, max_length: int) -> float:
        """Share of padded samples in this epoch's batches, with clips cropped to `max_length`."""
        lengths = np.minimum(self.lengths, max_length)
        padded = sum(len(b) * lengths[b].max() for b in self.batches())
        return float(1 - lengths.sum() / padded) if padded else 0.0


class IndexedRows(Dataset):
    """The rows of a `datasets` split as numpy arrays, each tagged with its position."""

    def __init__(self, ds):
        self.ds = ds.with_format("numpy", columns=["input_values", "label"])

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, index: int) -> dict:
        return {**self.ds[index], "index": index}


class Collator:
    """Crops clips (randomly in training, centred otherwise), augments training clips (speed before
    the crop, noise after it; log-mel warp and shift on the features) and pads them into a batch."""

    def __init__(
        self,
        extractor,
        labels: list[str],
        max_seconds: float,
        train: bool,
        seed: int = 0,
        augmenter: Augmenter | None = None,
    ):
        self.extractor = extractor
        self.features = input_features(extractor)
        self.label_ids = {label: i for i, label in enumerate(labels)}
        self.max_len = int(max_seconds * extractor.sampling_rate)
        self.train, self.seed = train, seed
        self.augmenter = augmenter if train and augmenter and augmenter.active else None
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _crop(self, wave: np.ndarray, index: int) -> np.ndarray:
        extra = wave.size - self.max_len
        if extra <= 0:
            return wave
        if self.train:
            start = int(np.random.default_rng([self.seed, self.epoch, index]).integers(extra + 1))
        else:
            start = extra // 2
        return wave[start : start + self.max_len]

    def _wave(self, row: dict) -> np.ndarray:
        wave, index, aug = np.asarray(row["input_values"], dtype=np.float32), row["index"], self.augmenter
        if aug is None:
            return self._crop(wave, index)
        return aug.add_noise(self._crop(aug.speed_up(wave, self.epoch, index), index), self.epoch, index)

    def _perturb_features(self, batch, rows: list[dict]) -> None:
        """Each clip's real (unpadded) steps of `batch["input_features"]`, perturbed in place."""
        features, mask = batch["input_features"], batch.get("attention_mask")
        for i, row in enumerate(rows):
            steps = int(mask[i].sum()) if mask is not None else features.shape[1]
            features[i, :steps] = self.augmenter.perturb_features(
                features[i, :steps], self.extractor.num_mel_bins, self.epoch, row["index"]
            )

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        waves = [self._wave(r) for r in rows]
        masked = bool(self.extractor.return_attention_mask)
        if takes_waveform(self.extractor):  # prepared values are the normalised waveform: pad them
            batch = self.extractor.pad(
                {"input_values": waves}, padding=True, return_attention_mask=masked, return_tensors="pt"
            )
        else:  # features (log-mel filter banks) of the cropped waveform, as inference computes them
            batch = self.features(waves)
            if self.augmenter:
                self._perturb_features(batch, rows)
        batch["labels"] = torch.tensor([self.label_ids[str(r["label"])] for r in rows])
        return dict(batch)


def clip_lengths(ds, sampling_rate: int) -> np.ndarray:
    """Samples per clip, from the prepared `duration` column (no audio is read)."""
    return np.rint(np.asarray(ds["duration"], dtype=np.float64) * sampling_rate).astype(np.int64)


def make_loader(ds, extractor, labels: list[str], cfg, train: bool) -> DataLoader:
    """A DataLoader over a prepared split, batched by `LengthGroupedBatches` (training or evaluation)."""
    seconds = cfg.data.max_train_seconds if train else cfg.data.max_eval_seconds
    data = cfg.data
    augmenter = Augmenter(
        data.speed_perturbation, data.noise_snr_db, cfg.train.seed, data.mel_warp, data.level_shift
    )
    batches = LengthGroupedBatches(
        clip_lengths(ds, extractor.sampling_rate),
        cfg.train.batch_size,
        shuffle=train,
        group=cfg.train.group_by_length or not train,
        seed=cfg.train.seed,
    )
    return DataLoader(
        IndexedRows(ds),
        batch_sampler=batches,
        collate_fn=Collator(extractor, labels, seconds, train, cfg.train.seed, augmenter),
        num_workers=cfg.train.num_workers,
        generator=torch.Generator().manual_seed(cfg.train.seed),  # keeps the global RNG (dropout) untouched
    )
