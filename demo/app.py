"""Gradio demo: record or upload a clip, see the emotion probabilities and, for longer clips, the
emotion over time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from demo.live import Probabilities, live_tab
from pipeline.data.audio import header_seconds
from pipeline.errors import InputError
from pipeline.inference.answers import Options

TIMELINE_MIN_S = 4.0  # clips at least this long also get a plot of emotion over time
TIMELINE = Options(window_s=2.0, hop_s=0.5)
SPEECH = Options(segments="vad")
WINDOWS, SEGMENTS = "windows", "speech segments"  # the timeline's choices
EXAMPLES = Path(__file__).parent / "examples"
EXAMPLE_NAMES = ("neutral", "happy", "sad", "angry", "story_neutral_happy_sad_angry")

Classify = Callable[[str, Options], dict[str, Any]]


def example_clips() -> list[str]:
    """The synthetic example clips shipped with the demo: one per emotion, then a longer one whose
    emotion changes (written by `pipeline.data.synth.write_examples`)."""
    return [str(EXAMPLES / f"{name}.flac") for name in EXAMPLE_NAMES]


def timeline_frame(answer: dict[str, Any]) -> pd.DataFrame:
    """One row per (window centre, emotion) with its probability, for the line plot."""
    return pd.DataFrame(
        [
            {"time (s)": (s["start"] + s["end"]) / 2, "emotion": label, "probability": p}
            for s in answer["segments"]
            for label, p in s["scores"].items()
        ]
    )


def answer_note(answer: dict[str, Any], options: Options) -> str:
    """What the top answer is: the whole clip's, or the mean over the timeline's windows or speech
    segments (then it is the REST API's answer with the same options)."""
    if "segments" not in answer:
        return "Top answer: the whole clip."
    if options.segments:
        return (
            f"Top answer: the mean over the {len(answer['segments'])} speech segments below, weighted by "
            "their length (`segments=vad` in the REST API; silence is left out)."
        )
    return (
        f"Top answer: the mean over the {len(answer['segments'])} windows of the timeline below "
        f"(`window_s={TIMELINE.window_s:g}`, `hop_s={TIMELINE.hop_s:g}` in the REST API)."
    )


def build_demo(
    classify: Classify,
    labels: list[str],
    model_name: str,
    examples: list[str] = (),
    live: Probabilities | None = None,
) -> gr.Blocks:
    """A Blocks app around `classify(path, options)`, which returns the REST API's answer (the
    service's own method when mounted at /ui, an HTTP call with `python -m demo --api URL`), and,
    given `live(waves) -> probabilities`, a Live tab for the microphone.

    `classify` raises InputError for bad input; the upload limit (`max_file_size`) is set where the
    app is mounted or launched.
    """

    def run(path: str | None, timeline: str = WINDOWS) -> tuple[dict[str, float], str, gr.LinePlot]:
        if not path:
            raise gr.Error("Record or upload a clip first.")
        options = TIMELINE if header_seconds(path) >= TIMELINE_MIN_S else Options()
        options = SPEECH if timeline == SEGMENTS else options
        try:  # one model call: a timeline's top answer is the mean over its windows or segments
            answer = classify(path, options)
        except InputError as err:  # name the file, not Gradio's temporary path
            raise gr.Error(str(err).replace(path, Path(path).name)) from err
        windows = "segments" in answer
        plot = gr.LinePlot(value=timeline_frame(answer) if windows else None, visible=windows)
        return answer["scores"], answer_note(answer, options), plot

    with gr.Blocks(title="Speech emotion recognition") as demo:
        gr.Markdown(f"# Speech emotion recognition\nModel **{model_name}** · classes: {', '.join(labels)}")
        with gr.Tab("Clip"):
            gr.Markdown(
                "Upload a clip (WAV, FLAC, OGG, MP3; any sample rate) or record one with the microphone. "
                f"Clips of {TIMELINE_MIN_S:g} s or more also get the emotion over time "
                f"({TIMELINE.window_s:g} s windows every {TIMELINE.hop_s:g} s), and their top answer is "
                "the mean over those windows, as the REST API answers with the same `window_s` and `hop_s`."
            )
            with gr.Row():
                with gr.Column():
                    audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Speech")
                    timeline = gr.Radio(
                        [WINDOWS, SEGMENTS],
                        value=WINDOWS,
                        label="Timeline",
                        info=f"{WINDOWS}: for clips of {TIMELINE_MIN_S:g} s or more; "
                        f"{SEGMENTS}: each stretch of speech (voice-activity detector)",
                    )
                    button = gr.Button("Classify", variant="primary")
                with gr.Column():
                    scores = gr.Label(num_top_classes=len(labels), label="Emotion")
                    note = gr.Markdown()
            plot = gr.LinePlot(
                x="time (s)",
                y="probability",
                color="emotion",
                y_lim=[0, 1],
                label="Emotion over time",
                visible=False,
            )
            if examples:
                gr.Examples(
                    examples=[[e] for e in examples], inputs=audio, label="Example clips (synthetic speech)"
                )
            button.click(run, inputs=[audio, timeline], outputs=[scores, note, plot], api_name="classify")
        if live is not None:
            live_tab(live, labels)
    return demo
