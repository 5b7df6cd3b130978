"""A deterministic synthetic emotional-speech corpus: no download, no system package.

A source-filter voice: a glottal source (harmonics with a voice-quality-dependent spectral tilt,
jitter, shimmer and breath noise) drives vowel formant resonators, syllable by syllable, with
fricative noise between syllables. Speakers differ in pitch, vocal-tract length and speaking rate;
emotions differ in pitch level and range, contour, tempo, loudness and voice quality. Every clip
gets a random gain, so loudness alone does not give the emotion away.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import lfilter
from tqdm import tqdm

from .audio import save_wav
from .corpus_files import SYNTHETIC_MARK
from .prepare_config import SynthConfig

SAMPLING_RATE = 16_000


@dataclass(frozen=True)
class Emotion:
    pitch: float  # multiplier of the speaker's base F0
    pitch_range: float  # depth of the intonation contour (fraction of F0)
    rate: float  # syllables per second
    tilt: float  # harmonic roll-off exponent: low = tense/bright, high = breathy/dark
    breath: float  # aspiration noise level
    jitter: float  # cycle-to-cycle F0 perturbation
    shimmer: float  # amplitude perturbation
    level_db: float
    slope: float  # overall F0 drift over the utterance (fraction of F0)
    attack: float  # syllable onset time as a fraction of the syllable


EMOTIONS: dict[str, Emotion] = {
    "neutral": Emotion(1.00, 0.10, 4.0, 1.10, 0.04, 0.004, 0.03, 0.0, -0.08, 0.25),
    "happy": Emotion(1.35, 0.60, 5.4, 0.75, 0.03, 0.005, 0.03, 2.0, 0.15, 0.22),
    "sad": Emotion(0.85, 0.05, 2.7, 1.60, 0.30, 0.006, 0.04, -5.0, -0.20, 0.40),
    "angry": Emotion(1.10, 0.15, 4.4, 0.35, 0.02, 0.025, 0.35, 5.0, -0.12, 0.05),
}

# (F1, F2, F3) in Hz for an adult male vocal tract.
VOWELS = {
    "a": (730, 1090, 2440),
    "e": (530, 1840, 2480),
    "i": (270, 2290, 3010),
    "o": (570, 840, 2410),
    "u": (300, 870, 2240),
}
SENTENCES = ["aeioa", "oauie", "iaoeau", "eoaiu", "uaeaoi", "aoaeio", "ieaou", "oeiaea"]


@dataclass(frozen=True)
class Speaker:
    name: str
    gender: str
    f0: float
    tract: float  # formant scale: shorter vocal tract, higher formants
    tempo: float
    expressiveness: float  # how strongly this speaker acts the emotions


def make_speakers(n: int, seed: int) -> list[Speaker]:
    rng = np.random.default_rng([seed, 0xC0FFEE])
    speakers = []
    for i in range(n):
        female = i % 2 == 1
        speakers.append(
            Speaker(
                name=f"spk{i:02d}",
                gender="female" if female else "male",
                f0=float(rng.uniform(175, 235) if female else rng.uniform(95, 140)),
                tract=float(rng.uniform(1.10, 1.22) if female else rng.uniform(0.92, 1.04)),
                tempo=float(rng.uniform(0.88, 1.12)),
                expressiveness=float(rng.uniform(0.85, 1.15)),
            )
        )
    return speakers


def _resonator(x: np.ndarray, freq: float, bandwidth: float) -> np.ndarray:
    r = np.exp(-np.pi * bandwidth / SAMPLING_RATE)
    theta = 2 * np.pi * freq / SAMPLING_RATE
    a = [1.0, -2 * r * np.cos(theta), r * r]
    return lfilter([1.0 - r], a, x)


def _source(f0: np.ndarray, emo: Emotion, rng: np.random.Generator) -> np.ndarray:
    """Glottal source: band-limited harmonics with tilt, jitter, shimmer and breath noise."""
    n = f0.size
    jitter = 1 + emo.jitter * rng.standard_normal(n).cumsum() / np.sqrt(np.arange(1, n + 1))
    phase = 2 * np.pi * np.cumsum(f0 * jitter) / SAMPLING_RATE
    out = np.zeros(n)
    for k in range(1, 60):
        audible = k * f0 < 0.45 * SAMPLING_RATE
        if not audible.any():
            break
        out += audible * np.sin(k * phase) * k ** (-emo.tilt)
    shimmer = 1 + emo.shimmer * lfilter([0.05], [1, -0.95], rng.standard_normal(n)) * 4
    breath = emo.breath * rng.standard_normal(n) * (1 + np.cos(phase)) / 2
    out = out / (np.abs(out).max() + 1e-9)
    return out * shimmer + breath


def synthesize_utterance(speaker: Speaker, emotion: str, rng: np.random.Generator) -> np.ndarray:
    """One clip of `speaker` saying a random sentence with `emotion`."""
    base = EMOTIONS[emotion]
    e = speaker.expressiveness * rng.uniform(0.85, 1.15)
    emo = Emotion(
        pitch=1 + (base.pitch - 1) * e,
        pitch_range=base.pitch_range * e,
        rate=base.rate * speaker.tempo * rng.uniform(0.9, 1.1),
        tilt=base.tilt * rng.uniform(0.92, 1.08),
        breath=base.breath * rng.uniform(0.8, 1.2),
        jitter=base.jitter,
        shimmer=base.shimmer,
        level_db=base.level_db,
        slope=base.slope * e,
        attack=base.attack,
    )
    sentence = SENTENCES[rng.integers(len(SENTENCES))]
    syllable = int(SAMPLING_RATE / emo.rate)
    n = syllable * len(sentence) + SAMPLING_RATE // 4
    t = np.arange(n) / n
    # Intonation: one accent per syllable, scaled by the pitch range, plus a global drift.
    lead = SAMPLING_RATE // 8
    since = np.arange(n) - lead
    heights = rng.uniform(0.3, 1.0, len(sentence) + 1)[np.clip(since // syllable, 0, len(sentence))]
    accents = np.sin(np.pi * (since % syllable) / syllable) * heights
    contour = 1 + emo.pitch_range * (accents - 0.5) + emo.slope * (t - 0.5)
    f0 = (
        speaker.f0 * emo.pitch * contour * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * np.arange(n) / SAMPLING_RATE))
    )
    source = _source(f0, emo, rng)
    out = np.zeros(n)
    start = lead
    for vowel in sentence:
        seg = slice(start, min(start + syllable, n))
        length = seg.stop - seg.start
        pos = np.arange(length) / length
        attack = np.clip(pos / emo.attack, 0, 1)
        release = np.clip((0.8 - pos) / 0.25, 0, 1)
        envelope = attack * release
        shaped = sum(
            gain * _resonator(source[seg], formant * speaker.tract, bandwidth)
            for formant, bandwidth, gain in zip(VOWELS[vowel], (80, 100, 140), (1.0, 0.6, 0.3))
        )
        fricative = _resonator(rng.standard_normal(length), 4000 * speaker.tract, 1500) * 0.15 * (pos > 0.82)
        out[seg] += shaped * envelope + fricative
        start += syllable
    out *= 10 ** ((emo.level_db + rng.uniform(-6, 6)) / 20)
    out /= max(1.0, np.abs(out).max() / 0.5)
    out += 10 ** (-rng.uniform(35, 45) / 20) * 0.3 * rng.standard_normal(n)
    peak = np.abs(out).max()
    return (out / max(peak, 1.0) * 0.99 if peak > 1 else out).astype(np.float32)


def synthesize_corpus(
    out_dir: str | Path,
    speakers: int = SynthConfig.speakers,
    utterances: int = SynthConfig.utterances,
    seed: int = SynthConfig.seed,
    emotions: list[str] | None = None,
    progress: bool = True,
) -> Path:
    """Write `out_dir/<emotion>/<speaker>_<emotion>_<k>.wav` and `metadata.csv` (file, speaker, gender).

    Every clip is seeded by (seed, speaker, emotion, k), so the corpus is identical on every run.
    """
    out = Path(out_dir)
    emotions = emotions or list(EMOTIONS)
    rows = []
    jobs = [(s, e, k) for s in make_speakers(speakers, seed) for e in emotions for k in range(utterances)]
    for speaker, emotion, k in tqdm(jobs, desc="synthesizing", disable=not progress):
        rng = np.random.default_rng([seed, int(speaker.name[3:]), list(EMOTIONS).index(emotion), k])
        rel = Path(emotion) / f"{speaker.name}_{emotion}_{k:03d}.wav"
        (out / emotion).mkdir(parents=True, exist_ok=True)
        save_wav(out / rel, synthesize_utterance(speaker, emotion, rng), SAMPLING_RATE)
        rows.append({"file": rel.as_posix(), "speaker": speaker.name, "gender": speaker.gender})
    with open(out / "metadata.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["file", "speaker", "gender"])
        writer.writeheader()
        writer.writerows(rows)
    (out / SYNTHETIC_MARK).write_text("written by `ser synth`: synthetic speech, for checking the pipeline\n")
    return out


def write_examples(out_dir: str | Path, seed: int = 0) -> list[Path]:
    """Example clips for the demo (16-bit FLAC): one per emotion by a test-split speaker of the default
    corpus, then a longer clip whose emotion changes every few seconds (to show the timeline). The demo
    ships them as package data (`demo/examples/`, written by this function)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    speaker = make_speakers(2, seed)[1]
    paths, story = [], []
    for index, emotion in enumerate(EMOTIONS):
        clips = [
            synthesize_utterance(speaker, emotion, np.random.default_rng([seed, 1, index, 100 + k]))
            for k in range(3)
        ]
        paths.append(out / f"{emotion}.flac")
        save_wav(paths[-1], clips[0], SAMPLING_RATE)
        story += clips
    paths.append(out / ("story_" + "_".join(EMOTIONS) + ".flac"))
    save_wav(paths[-1], np.concatenate(story), SAMPLING_RATE)
    return paths
