"""Benchmark archive scoring (`ser predict --output-dir`): files per second and real-time factor of
one worker (the baseline, measured in the same run), two worker processes, and Ray Data actors on a
local instance, over the same generated archive.

Two archives (`scripts/archives.py`): short clips (0.8-3 s; WAV and FLAC at 8-44.1 kHz, in nested
folders) with whole-clip answers, and long recordings (`--minutes` each) with speech-segment
timelines (`--segments vad`). Each figure is the wall time of the whole command, start-up and model
loading included, into an empty output directory. Writes runs/bench/archive.md.

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
SUMMARY = re.compile(r"(\d+) files scored \(([\d.]+) h of audio\)")


def timed(command: list[str]) -> tuple[float, int, float]:
    """(wall seconds, files, hours of audio) of one scoring command."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    found = SUMMARY.search(done.stdout)
    if done.returncode or not found:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-1500:]}")
    return wall, int(found[1]), float(found[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(REPO_ROOT / "runs" / "demo" / "model" / "best"))
    parser.add_argument("--clips", type=int, default=1000, help="short clips (0: none)")
    parser.add_argument("--recordings", type=int, default=2, help="long recordings (0: none)")
    parser.add_argument("--minutes", type=float, default=10.0, help="each long recording's length")
    parser.add_argument("--out", type=Path, default=OUT, help="where archive.md goes")
    args = parser.parse_args()
    ser = [sys.executable, "-m", "pipeline.cli", "predict", "--checkpoint", args.checkpoint]
    lines = [
        f"`ser predict --output-dir`, {cpu_model()}, {psutil.cpu_count()} cores; wall time of the whole "
        "command (start-up and model loading included)",
        "",
        "| archive | engine | wall s | files/s | real time / wall | vs 1 worker |",
        "|---|---|---:|---:|---:|---:|",
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
        for n, (what, root, options) in enumerate(archives):
            baseline = None
            for k, (engine, flags) in enumerate(ENGINES.items()):
                out = Path(tmp) / f"scores{n}-{k}"
                wall, files, hours = timed([*ser, *options, *flags, "--output-dir", str(out), str(root)])
                baseline = baseline or files / wall
                lines.append(
                    f"| {what} | {engine} | {wall:.1f} | {files / wall:.1f} | {hours * 3600 / wall:.0f}x "
                    f"| {files / wall / baseline:.2f}x |"
                )
                print(lines[-1], flush=True)
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "archive.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
