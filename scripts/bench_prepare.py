"""Benchmark `ser prepare` against the straightforward `datasets` recipe, in one run, on one corpus.

The straightforward recipe (what transformers' audio-classification example does): a `datasets`
`Audio` column cast to 16 kHz, decoded and resampled example by example (torchcodec + FFmpeg), then
the feature extractor example by example. Ours: `pipeline.data.prepare.prepare`, the whole command
(reading, decoding, splitting, writing), cold (empty cache) and warm (same settings again).

The corpus is the synthetic demo corpus re-saved as 48 kHz stereo WAV, as RAVDESS is distributed.
Prints a Markdown table (audio-seconds per second and ratios against the baseline) and writes it,
with a bar chart, to --out.

    .venv/bin/python scripts/bench_prepare.py            # needs `make bench-deps` (FFmpeg, torchcodec)
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import datasets  # noqa: E402
import matplotlib.pyplot  # noqa: E402, F401  (one-time imports are paid before any timing)
import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torchcodec.decoders  # noqa: E402, F401

from pipeline.config import ModelConfig  # noqa: E402
from pipeline.data.audio import resample  # noqa: E402
from pipeline.data.prepare import prepare  # noqa: E402
from pipeline.data.prepare_config import PrepareConfig  # noqa: E402
from pipeline.data.synth import synthesize_corpus  # noqa: E402
from pipeline.model import build_feature_extractor  # noqa: E402


def make_corpus(root: Path, speakers: int, utterances: int, rate: int) -> tuple[list[Path], float]:
    """The demo corpus as `rate` Hz stereo WAV; returns the files and their total duration."""
    synthesize_corpus(root, speakers=speakers, utterances=utterances, seed=0, progress=False)
    files = sorted(root.rglob("*.wav"))
    seconds = 0.0
    for path in files:
        wave, sr = sf.read(path, dtype="float32")
        seconds += wave.size / sr
        high = resample(wave, sr, rate)
        sf.write(path, np.stack([high, 0.9 * high], axis=1), rate, subtype="PCM_16")
    return files, seconds


def baseline(files: list[Path]) -> float:
    """Seconds for the per-example recipe: Audio column decode + resample, extractor per example."""
    extractor = build_feature_extractor(ModelConfig())
    start = time.perf_counter()
    ds = datasets.Dataset.from_dict({"audio": [str(f) for f in files]})
    ds = ds.cast_column("audio", datasets.Audio(sampling_rate=extractor.sampling_rate))

    name = extractor.model_input_names[0]  # input_values (waveform) or input_features (log-mel)

    def features(example):
        samples = example["audio"].get_all_samples()
        wave = samples.data.mean(dim=0).numpy()
        return {name: extractor(wave, sampling_rate=samples.sample_rate)[name][0]}

    ds.map(features, remove_columns=["audio"], desc="baseline")
    return time.perf_counter() - start


def ours(corpus: Path, out: Path, num_proc: int) -> float:
    start = time.perf_counter()
    prepare([corpus], out, PrepareConfig(num_proc=num_proc))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speakers", type=int, default=40)
    parser.add_argument("--utterances", type=int, default=6)
    parser.add_argument("--rate", type=int, default=48_000)
    parser.add_argument("--num-proc", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=3, help="each timing is the median of this many runs")
    parser.add_argument("--out", default="runs/bench")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files, audio_s = make_corpus(tmp / "corpus", args.speakers, args.utterances, args.rate)

        def median(run) -> float:
            return float(np.median([run() for _ in range(args.repeats)]))

        def cold(procs: int) -> float:
            shutil.rmtree(tmp / "prepared", ignore_errors=True)
            return ours(tmp / "corpus", tmp / "prepared", procs)

        timings = {"baseline: datasets Audio column, per example": median(lambda: baseline(files))}
        for procs in sorted({1, args.num_proc}):
            timings[f"ser prepare, cold, num_proc={procs}"] = median(lambda procs=procs: cold(procs))
        timings[f"ser prepare, warm cache, num_proc={args.num_proc}"] = median(
            lambda: ours(tmp / "corpus", tmp / "prepared", args.num_proc)
        )
    base = next(iter(timings.values()))
    cold = timings[f"ser prepare, cold, num_proc={args.num_proc}"]
    warm = timings[f"ser prepare, warm cache, num_proc={args.num_proc}"]
    lines = [
        f"{len(files)} clips, {audio_s:.0f} s of audio ({args.rate} Hz stereo WAV), {os.cpu_count()} cores; "
        f"median of {args.repeats} runs each.",
        "",
        "| method | wall s | audio-s per s | vs baseline |",
        "|---|---:|---:|---:|",
        *(f"| {name} | {t:.2f} | {audio_s / t:.0f} | {base / t:.1f}x |" for name, t in timings.items()),
        "",
        f"warm re-run vs cold: {cold / warm:.1f}x faster",
    ]
    table = "\n".join(lines)
    print(table)
    (out / "bench_prepare.md").write_text(table + "\n")
    plot(timings, audio_s, out / "bench_prepare.png")


def plot(timings: dict[str, float], audio_s: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3))
    names = list(timings)
    ax.barh(names, [audio_s / timings[n] for n in names], color=["grey"] + ["tab:blue"] * (len(names) - 1))
    ax.invert_yaxis()
    ax.set_xlabel("audio seconds prepared per wall-clock second")
    ax.set_xscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
