"""Benchmark archive scoring (`ser predict --output-dir`): files per second and real-time factor of
one worker (the baseline, measured in the same run), two worker processes, and Ray Data actors on a
local instance, over the same generated archive.

Two archives (`scripts/archives.py`): short clips (0.8-3 s; WAV and FLAC at 8-44.1 kHz, in nested
folders) with whole-clip answers, and long recordings (`--minutes` each) with speech-segment
timelines (`--segments vad`). Each figure is the wall time of the whole command, start-up and model
loading included, into an empty output directory. Writes runs/bench/archive.md and archive.png.

    .venv/bin/python scripts/bench_archive.py     # after `make run` (the demo model); about 5 minutes
    .venv/bin/python scripts/bench_archive.py --clips 2000 --recordings 4 --checkpoint runs/x/best
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from archives import make_archive
from servers import cpu_model

from pipeline.inference.serve import REPO_ROOT

OUT = REPO_ROOT / "runs" / "bench"
ENGINES = {
    "1 worker": ["--workers", "1"],
    "2 workers": ["--workers", "2"],
    "Ray, 2 actors": ["--engine", "ray", "--workers", "2"],
}
SUMMARY = re.compile(r"(\d+) files scored \(([\d.]+) h of audio\) in ([\d.]+) s, the first after ([\d.]+) s")


def timed(command: list[str]) -> tuple[float, int, float, float, float]:
    """(wall seconds, files, hours of audio, the job's own seconds, seconds to its first answer) of
    one scoring command."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    found = SUMMARY.search(done.stdout)
    if done.returncode or not found:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-1500:]}")
    return wall, int(found[1]), float(found[2]), float(found[3]), float(found[4])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(REPO_ROOT / "runs" / "demo" / "model" / "best"))
    parser.add_argument("--clips", type=int, default=1000, help="short clips (0: none)")
    parser.add_argument("--recordings", type=int, default=4, help="long recordings (0: none)")
    parser.add_argument("--minutes", type=float, default=5.0, help="each long recording's length")
    parser.add_argument("--out", type=Path, default=OUT, help="where archive.md and archive.png go")
    args = parser.parse_args()
    ser = [sys.executable, "-m", "pipeline.cli", "predict", "--checkpoint", args.checkpoint]
    lines = [
        f"`ser predict --output-dir`, {cpu_model()}, {psutil.cpu_count()} cores. wall: the whole command; "
        "start-up: to the first answer (processes, model loading, Ray); once started: files/s after it",
        "",
        "| archive | engine | wall s | start-up s | files/s | once started | real time | vs 1 worker |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        archives = []
        if args.clips:
            clips = make_archive(Path(tmp) / "clips", args.clips, broken=0)
            archives.append((f"{args.clips} short clips, whole-clip answers", clips.root, []))
        if args.recordings:
            long = make_archive(Path(tmp) / "long", 0, args.recordings, args.minutes, broken=0)
            what = f"{args.recordings} recordings of {args.minutes:g} min, `--segments vad`"
            archives.append((what, long.root, ["--segments", "vad"]))
        rates: dict[str, list[tuple[str, float, float]]] = {}
        for n, (what, root, options) in enumerate(archives):
            baseline = None
            for k, (engine, flags) in enumerate(ENGINES.items()):
                out = Path(tmp) / f"scores{n}-{k}"
                wall, files, hours, job, first = timed(
                    [*ser, *options, *flags, "--output-dir", str(out), str(root)]
                )
                baseline = baseline or files / wall
                lines.append(
                    f"| {what} | {engine} | {wall:.1f} | {first:.1f} | {files / wall:.1f} "
                    f"| {(files - 1) / (job - first):.1f} | {hours * 3600 / wall:.0f}x "
                    f"| {files / wall / baseline:.2f}x |"
                )
                print(lines[-1], flush=True)
                rates.setdefault(what, []).append((engine, files / wall, (files - 1) / (job - first)))
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "archive.md").write_text("\n".join(lines) + "\n")
    plot(rates, args.out / "archive.png")


def plot(rates: dict[str, list[tuple[str, float, float]]], path: Path) -> None:
    """Files per second of each engine, whole command and once started, one panel per archive."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rates), figsize=(5 * len(rates), 3.5), squeeze=False)
    for ax, (what, rows) in zip(axes[0], rates.items()):
        names = [engine for engine, _, _ in rows]
        x = range(len(rows))
        ax.bar([i - 0.2 for i in x], [r for _, r, _ in rows], 0.4, label="whole command")
        ax.bar([i + 0.2 for i in x], [r for _, _, r in rows], 0.4, label="once started")
        ax.set_xticks(list(x), names)
        ax.set(title=what.replace("`", ""), ylabel="files/s")
        ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
