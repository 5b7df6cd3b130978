"""`ser predict` on a recording of any length: read in blocks, its timeline classified as it is
read, each span written out as it is known. Memory is bounded by a block and the longest span,
not by the recording."""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np
from tqdm.auto import tqdm

from ..commands import INFERENCE_BATCH, Runtime
from ..data.audio import decoder_messages_silenced, header_seconds, load_audio
from ..data.blocks import audio_blocks
from ..errors import LimitError, OptionError, SerError
from .answers import Options, answer_blocks, classify_wave
from .backends import resolve_device
from .memory import settle_process
from .predictor import Predictor
from .vad import VadConfig

OUTPUT_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv"}
MAX_WHOLE_CLIP_S = 60.0  # one forward pass over more than this takes gigabytes (attention)


def long_file_check(path: str) -> None:
    """Refuse a whole-clip answer for a file longer than `MAX_WHOLE_CLIP_S` (it needs a timeline)."""
    seconds = header_seconds(path)
    if seconds > MAX_WHOLE_CLIP_S:
        raise LimitError(
            f"{path} is {seconds:.1f} s long; a whole-clip answer stops at {MAX_WHOLE_CLIP_S:g} s: "
            "add --segments vad (speech segments) or --window-s (fixed windows)"
        )


class TimelineWriter:
    """Spans as JSON lines (`.jsonl`) or CSV rows (`.csv`: file, start, end, label, score, then one
    column per label), one per span, written as they come."""

    def __init__(self, sink: IO[str], kind: str, labels: list[str]):
        self.sink, self.kind = sink, kind
        if kind == "csv":
            self.csv = csv.writer(sink)
            self.csv.writerow(["file", "start", "end", "label", "score", *labels])
        self.labels = labels

    @classmethod
    def kind_of(cls, path: str | Path) -> str:
        kind = OUTPUT_FORMATS.get(Path(path).suffix.lower())
        if kind is None:
            raise OptionError(f"--output {path}: name a .jsonl or .csv file")
        return kind

    def write(self, file: str, segment: dict) -> None:
        if self.kind == "csv":
            scores = [segment["scores"].get(label, "") for label in self.labels]
            self.csv.writerow(
                [file, segment["start"], segment["end"], segment["label"], segment["score"], *scores]
            )
        else:
            self.sink.write(json.dumps({"file": file, **segment}) + "\n")


def predict_recording(
    path: str,
    predictor: Predictor,
    options: Options,
    writer: TimelineWriter | None = None,
    vad: VadConfig | None = None,
    batch_size: int = INFERENCE_BATCH,
    progress: bool = True,
) -> dict:
    """The answer for the recording at `path`, read in blocks, with its timeline (`options` asks
    for one): the segments in the answer, or, with a `writer`, written there as they are known."""
    sr = predictor.sampling_rate
    total = round(header_seconds(path), 1) or None
    with tqdm(total=total, unit="s", desc=Path(path).name, disable=None if progress else True) as bar:

        def blocks() -> Iterator[np.ndarray]:
            for block in audio_blocks(path, sr):
                bar.update(round(len(block) / sr, 1))
                yield block

        write = writer and (lambda segment: writer.write(path, segment))
        return answer_blocks(
            blocks(), sr, predictor.labels, predictor.probabilities, options, vad, batch_size, write
        )


def answer_file(
    path: str,
    predictor: Predictor,
    options: Options,
    vad: VadConfig,
    writer: TimelineWriter | None = None,
    progress: bool = True,
) -> dict:
    """`ser predict`'s answer for one file: its timeline read in blocks (`options` asks for one),
    else the whole clip (at most `MAX_WHOLE_CLIP_S`)."""
    with decoder_messages_silenced():  # an error is one line, without the decoder's notes
        if options.timeline:
            return predict_recording(path, predictor, options, writer, vad, progress=progress)
        long_file_check(path)
        wave = load_audio(path, predictor.sampling_rate)
        return classify_wave(
            wave, predictor.sampling_rate, predictor.labels, predictor.probabilities, options
        )


def predict_files(
    files: list[str],
    checkpoint: str,
    options: Options,
    vad: VadConfig,
    output: str | None = None,
    runtime: Runtime | None = None,
) -> Iterator[dict]:
    """`ser predict`: one answer per file; a timeline is read in blocks and, with `output`, written
    there as it is found."""
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        hint = " (a folder or a manifest is scored with --output-dir)" if Path(missing[0]).is_dir() else ""
        raise SerError(f"file not found: {missing[0]}{hint}")
    vad.check()
    kind = output and TimelineWriter.kind_of(output)
    if kind and not options.timeline:
        raise OptionError("--output writes a timeline: add --segments vad or --window-s")
    predictor = Predictor.from_pretrained(
        checkpoint, resolve_device(runtime.device, runtime.backend), runtime.precision, runtime.backend
    )
    settle_process(predictor.backend)
    options.check(len(predictor.labels))
    with contextlib.ExitStack() as stack:
        writer = None
        if kind:
            writer = TimelineWriter(
                stack.enter_context(open(output, "w", newline="")), kind, predictor.labels
            )
        for path in files:
            yield {"file": path, **answer_file(path, predictor, options, vad, writer)}
