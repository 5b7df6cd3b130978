"""Synthetic audio archives, as a call centre or a research group hands one over: short clips in
nested folders (WAV and FLAC, several sampling rates), long recordings, files that cannot be
decoded, and a manifest with extra columns. The speech is the demo corpus's (`pipeline.data.synth`);
the tests of archive scoring and the benchmarks (bench_long, bench_archive) make theirs here."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.data.audio import resample
from pipeline.data.synth import make_speakers, synthesize_utterance

SR = 16_000
EMOTIONS = ["angry", "happy", "neutral", "sad"]
RATES = (16_000, 16_000, 22_050, 44_100, 8_000)  # the clips' sampling rates, in turn
UTTERANCES = 96  # distinct utterances the clips are made from (each clip with its own gain and pauses)


def write_recording(path: Path, minutes: float, seed: int = 0) -> list[tuple[float, float, str]]:
    """A recording of about `minutes`: utterances with 0.6-2 s of quiet background between them, a
    cycle of about 2 minutes repeated; returns (start s, end s, emotion) of every utterance."""
    rng = np.random.default_rng(seed)
    speakers = make_speakers(8, seed + 100)  # not the demo corpus's training speakers
    parts, cycle, t = [], [], 0.0
    while t < 120:
        gap = rng.uniform(0.6, 2.0)
        emotion = EMOTIONS[rng.integers(4)]
        clip = synthesize_utterance(speakers[rng.integers(8)], emotion, rng)
        parts += [np.zeros(round(gap * SR), np.float32), clip]
        cycle.append((t + gap, t + gap + len(clip) / SR, emotion))
        t += gap + len(clip) / SR
    block = np.concatenate(parts)
    block = block + (10 ** (-60 / 20) * rng.standard_normal(len(block))).astype(np.float32)
    repeats = max(1, round(minutes * 60 * SR / len(block)))
    with sf.SoundFile(path, "w", SR, 1, subtype="PCM_16") as f:
        for _ in range(repeats):
            f.write(block)
    seconds = len(block) / SR
    return [(s + k * seconds, e + k * seconds, emo) for k in range(repeats) for s, e, emo in cycle]


@dataclass
class Archive:
    root: Path
    manifest: Path  # manifest.csv: path, speaker, channel
    clips: list[Path] = field(default_factory=list)
    recordings: list[Path] = field(default_factory=list)
    broken: list[Path] = field(default_factory=list)

    @property
    def files(self) -> list[Path]:
        return sorted([*self.clips, *self.recordings, *self.broken])


def make_archive(
    root: Path, clips: int, recordings: int = 0, minutes: float = 10.0, broken: int = 2, seed: int = 0
) -> Archive:
    """`clips` short clips under root/calls/<month>/<day>/, `recordings` long ones under
    root/meetings/, `broken` files that are not audio, and root/manifest.csv listing them all."""
    rng = np.random.default_rng(seed)
    speakers = make_speakers(8, seed + 200)
    pool = [synthesize_utterance(speakers[i % 8], EMOTIONS[i % 4], rng) for i in range(UTTERANCES)]
    archive = Archive(root, root / "manifest.csv")
    for i in range(clips):
        folder = root / "calls" / f"2026-{1 + i % 3:02d}" / f"day{1 + (i // 3) % 7:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        pad = np.zeros(round(rng.uniform(0.05, 0.6) * SR), np.float32)
        wave = np.concatenate([pad, pool[i % UTTERANCES] * rng.uniform(0.3, 1.0), pad[: len(pad) // 2]])
        path = folder / f"call{i:05d}.{'flac' if i % 4 == 3 else 'wav'}"
        rate = RATES[i % len(RATES)]
        sf.write(path, resample(wave, SR, rate), rate)
        archive.clips.append(path)
    (root / "meetings").mkdir(parents=True, exist_ok=True)
    for k in range(recordings):  # one recording's speech, each 7.3 s later in its 2-minute cycle
        path = root / "meetings" / f"meeting{k:02d}.wav"
        if k == 0:
            write_recording(path, minutes, seed)
            wave, _ = sf.read(path, dtype="int16")
        else:
            sf.write(path, np.roll(wave, round(k * 7.3 * SR)), SR)
        archive.recordings.append(path)
    for k in range(broken):
        path = root / "calls" / f"broken{k}.{'wav' if k % 2 == 0 else 'mp3'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.bytes(2048) if k % 2 == 0 else b"")
        archive.broken.append(path)
    with open(archive.manifest, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["path", "speaker", "channel"])
        for i, path in enumerate(archive.files):
            out.writerow([path.relative_to(root).as_posix(), f"spk{i % 13:02d}", ("left", "right")[i % 2]])
    return archive
