"""Gradio demo: record or upload a clip, see the emotion probabilities."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gradio as gr

from pipeline.errors import AudioError
from pipeline.inference import Prediction


def build_demo(
    predict: Callable[[str], Prediction],
    labels: list[str],
    model_name: str,
) -> gr.Blocks:
    """A Blocks app around `predict(path)`, which decodes, downmixes and resamples on the server.

    `predict` raises AudioError for bad input; the upload limit (`max_file_size`) is set where the
    app is mounted or launched (the service mounts it at /ui).
    """

    def classify(path: str | None) -> dict[str, float]:
        if not path:
            raise gr.Error("Record or upload a clip first.")
        try:
            return predict(path).scores
        except AudioError as err:  # name the file, not Gradio's temporary path
            raise gr.Error(str(err).replace(path, Path(path).name)) from err

    with gr.Blocks(title="Speech emotion recognition") as demo:
        gr.Markdown(
            f"# Speech emotion recognition\nModel **{model_name}**, classes: {', '.join(labels)}.\n\n"
            "Upload a clip (WAV, FLAC, OGG, MP3; any sample rate) or record one with the microphone."
        )
        with gr.Row():
            audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Speech")
            scores = gr.Label(num_top_classes=len(labels), label="Emotion")
        button = gr.Button("Classify", variant="primary")
        button.click(classify, inputs=audio, outputs=scores, api_name="classify")
    return demo
