"""The demo's live tab: the microphone streams to a `LiveSession`, which answers the emotion of the
last seconds twice a second; the newest answer is shown, and each emotion's probability over the
last `PLOT_S` seconds is plotted."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
import numpy as np
import pandas as pd

from pipeline.data.audio import to_mono
from pipeline.inference.live import LiveConfig, LiveSession

Probabilities = Callable[[list[np.ndarray]], np.ndarray]
PLOT_S = 30.0  # the plot shows the answers of the last this many seconds
TIME_LIMIT_S = 600  # one recording streams at most this long
CONFIG = LiveConfig()


@dataclass
class Recording:
    """One browser's current recording: its session and the answers still plotted."""

    session: LiveSession
    updates: list[dict[str, Any]] = field(default_factory=list)


def mono(samples: np.ndarray) -> np.ndarray:
    """A chunk as Gradio passes it, (samples,) or (samples, channels) of int16, as float32 mono in
    [-1, 1]."""
    wave = to_mono(samples)
    if np.issubdtype(samples.dtype, np.integer):
        wave /= -float(np.iinfo(samples.dtype).min)
    return wave


def plot_frame(updates: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (answer's end, emotion) with its probability, for the line plot."""
    return pd.DataFrame(
        [
            {"time (s)": u["end"], "emotion": label, "probability": p}
            for u in updates
            for label, p in u["scores"].items()
        ]
    )


def chunk_handler(probabilities: Probabilities, labels: list[str]) -> Callable:
    """The stream's handler: `(chunk, recording) -> (scores, status, plot, recording)`, where a chunk
    is Gradio's `(sampling_rate, samples)` and `recording` the browser's state (None at the start)."""

    def on_chunk(chunk: tuple[int, np.ndarray] | None, recording: Recording | None):
        shown = (gr.skip(),) * 3  # most chunks bring no answer: nothing to redraw
        if chunk is None:
            return *shown, recording
        sampling_rate, samples = chunk
        if recording is None:  # a new recording: clear the last one's answers
            recording = Recording(LiveSession(sampling_rate, probabilities, labels, CONFIG))
            shown = (None, "Listening…", None)
        for newest in recording.session.feed(mono(samples)):
            recording.updates = [u for u in recording.updates if u["end"] > newest["end"] - PLOT_S]
            recording.updates.append(newest)
            status = f"**{'Speech' if newest['speech'] else 'Silence'}** · {newest['end']:.1f} s heard"
            shown = (newest["scores"], status, plot_frame(recording.updates))
        return *shown, recording

    return on_chunk


def live_tab(probabilities: Probabilities, labels: list[str]) -> None:
    """The Live tab, built inside the caller's `gr.Blocks`: `probabilities(waves)` (16 kHz mono
    float32) returns one row of class probabilities per wave, in the order of `labels`."""
    with gr.Tab("Live"):
        gr.Markdown(
            f"Record with the microphone: every {CONFIG.update_s:g} s the emotion of the last "
            f"{CONFIG.window_s:g} s is shown, and plotted for the last {PLOT_S:g} s."
        )
        with gr.Row():
            microphone = gr.Audio(sources=["microphone"], type="numpy", streaming=True, label="Microphone")
            with gr.Column():
                current = gr.Label(num_top_classes=len(labels), label="Current emotion")
                status = gr.Markdown()
        plot = gr.LinePlot(x="time (s)", y="probability", color="emotion", y_lim=[0, 1], label="Live emotion")
        recording = gr.State()
        microphone.stream(
            chunk_handler(probabilities, labels),
            inputs=[microphone, recording],
            outputs=[current, status, plot, recording],
            stream_every=0.1,  # what Gradio 6's audio frontend sends anyway, whatever is set here
            time_limit=TIME_LIMIT_S,
            api_name="live",
        )
        microphone.stop_recording(lambda: None, outputs=recording, api_name=False)
