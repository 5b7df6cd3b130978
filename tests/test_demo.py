"""The Gradio demo: mounted at /ui of the real server, driven by a real browser, and on its own
against the REST API (`python -m demo --api URL`)."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import httpx
import pytest
from conftest import REPO_ROOT
from helpers import LABELS
from servers import background_server, free_port

ARTIFACTS = Path(os.environ.get("SER_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts"))
CHROMIUM = "/usr/bin/chromium"
LIVE_EMOTIONS = ("happy", "sad")  # the fully trained model tells these example clips apart best
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def rest_answer(url: str, clip: Path, **form) -> dict:
    """POST /classify's answer for `clip`, with `form` as its text fields."""
    response = httpx.post(
        f"{url}/classify",
        files={"audio": (clip.name, clip.read_bytes())},
        data={k: str(v) for k, v in form.items()},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_demo_page_is_served(server):
    response = httpx.get(f"{server}/ui/", timeout=30)
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    assert "gradio" in response.text.lower()


def test_demo_classifies_through_gradio(server, clips, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(f"{server}/ui/", verbose=False, download_files=str(tmp_path))
    label, note, plot = client.predict(handle_file(str(clips["ogg"])), api_name="/classify")
    assert label["label"] == rest_answer(server, clips["ogg"])["label"]
    assert {c["label"] for c in label["confidences"]} == set(LABELS)
    assert note == "Top answer: the whole clip."
    label, note, plot = client.predict(handle_file(str(clips["story"])), api_name="/classify")
    rows = plot["value"]["data"]
    assert len(rows) == len(LABELS) * 16  # 2 s windows every 0.5 s over 9.3 s, each with every label
    with pytest.raises(Exception, match="limit is"):
        client.predict(handle_file(str(clips["long"])), api_name="/classify")


def test_browser_uploads_a_clip_and_sees_the_prediction(server):
    """Headless Chromium on /ui: upload the example clip whose emotion changes, classify, see the
    plot and, above it, REST's answer for the same windows (their mean), said to be that mean."""
    from playwright.sync_api import expect, sync_playwright

    from demo.app import TIMELINE, example_clips

    story = Path(example_clips()[-1])
    whole = rest_answer(server, story)
    windowed = rest_answer(server, story, window_s=TIMELINE.window_s, hop_s=TIMELINE.hop_s)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"{server}/ui/")
            expect(page.get_by_text("Speech emotion recognition").first).to_be_visible(timeout=30_000)
            expect(page.get_by_role("tab", name="Live")).to_be_visible()  # the service's model, live
            page.locator("input[type=file]").first.set_input_files(str(story))
            page.get_by_role("button", name="Classify").click()
            label = page.locator("[data-testid=label-output-value]")
            expect(label).to_have_text(windowed["label"], timeout=60_000)
            n = len(windowed["segments"])
            expect(page.get_by_text(f"Top answer: the mean over the {n} windows")).to_be_visible()
            shown = {}  # one probability row per class; its meter holds the unrounded probability
            for name in LABELS:
                row = page.get_by_test_id(f"{name}-confidence-set")
                expect(row).to_be_visible()
                shown[name] = row.locator("meter").evaluate("meter => meter.value")
            assert shown == pytest.approx(windowed["scores"], abs=1e-6)
            assert shown != pytest.approx(whole["scores"], abs=1e-6)  # the clip tells the two apart
            expect(page.get_by_text("Emotion over time", exact=True)).to_be_visible()
            expect(page.locator(".vega-embed").first).to_be_visible()  # the drawn plot
            page.screenshot(path=str(ARTIFACTS / "demo.png"), full_page=True)
            speech = rest_answer(server, story, segments="vad")  # the same clip by speech segments
            page.get_by_label("speech segments").check()
            page.get_by_role("button", name="Classify").click()
            n = len(speech["segments"])
            expect(page.get_by_text(f"Top answer: the mean over the {n} speech segments")).to_be_visible(
                timeout=60_000
            )
            expect(label).to_have_text(speech["label"])
        finally:
            browser.close()
    assert (ARTIFACTS / "demo.png").stat().st_size > 10_000


def fake_microphone(path: Path, first: str, second: str, seconds: float) -> Path:
    """A 16-bit PCM WAV for Chromium's fake microphone: the `first` example clip repeated for
    `seconds`, then the `second` one."""
    import numpy as np
    import soundfile as sf

    from demo.app import EXAMPLES

    clips = [sf.read(EXAMPLES / f"{name}.flac", dtype="float32") for name in (first, second)]
    rate = clips[0][1]
    wave = np.concatenate([np.resize(clip, int(seconds * rate)) for clip, _ in clips])
    sf.write(path, wave, rate, subtype="PCM_16")
    return path


# Gradio asks for the microphone with `{audio: true}`: Chromium's voice processing (gain control,
# noise suppression) then makes the synthetic sad voice sound neutral to the model: so, as from a
# line input, without it.
RAW_MICROPHONE = """(() => {
  const devices = navigator.mediaDevices, open = devices.getUserMedia.bind(devices);
  const raw = {echoCancellation: false, noiseSuppression: false, autoGainControl: false};
  const audio = (c) => ({...(c.audio === true ? {} : c.audio), ...raw});
  devices.getUserMedia = (c) => open(c?.audio ? {...c, audio: audio(c)} : c);
})()"""


def test_browser_live_tab_follows_the_microphone(default_training, tmp_path):
    """Chromium's fake microphone (stereo 44.1 kHz) plays 10 s of one emotion's example clip, then
    10 s of another's, in a loop; in the Live tab of a demo on the fully trained model, the current
    emotion shows the first, then changes to the second, with the plot drawn."""
    from playwright.sync_api import expect, sync_playwright

    from demo.app import build_demo
    from pipeline.data.audio import TARGET_SAMPLING_RATE, load_audio
    from pipeline.inference.answers import classify_wave
    from pipeline.inference.predictor import Predictor

    first, second = LIVE_EMOTIONS
    predictor = Predictor.from_pretrained(default_training / "best", precision="fp32")
    labels = predictor.labels

    def classify(path, options):
        return classify_wave(load_audio(path), TARGET_SAMPLING_RATE, labels, predictor.probabilities, options)

    microphone = fake_microphone(tmp_path / "microphone.wav", first, second, seconds=10)
    flags = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
    flags.append(f"--use-file-for-fake-audio-capture={microphone}")
    port = free_port()
    demo = build_demo(classify, labels, "default training", live=predictor.probabilities)
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS + flags)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.add_init_script(RAW_MICROPHONE)
                page.goto(f"http://127.0.0.1:{port}/")
                page.get_by_role("tab", name="Live").click()
                page.get_by_role("button", name="Record").click()
                label = page.locator("[data-testid=label-output-value]")
                expect(label).to_have_text(first, timeout=30_000)
                expect(label).to_have_text(second, timeout=30_000)
                expect(page.get_by_text(" s heard")).to_be_visible()
                expect(page.locator(".vega-embed").first).to_be_visible()
                page.screenshot(path=str(ARTIFACTS / "demo-live.png"), full_page=True)
                page.get_by_role("button", name="Stop").click()
            finally:
                browser.close()
    finally:
        demo.close()


@contextlib.contextmanager
def standalone_demo(api: str):
    port = free_port()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "demo", "--api", api, "--port", str(port)]
    with background_server(command, f"http://127.0.0.1:{port}/", ARTIFACTS / f"demo-{port}.log", timeout=90):
        yield f"http://127.0.0.1:{port}/"


def test_standalone_demo_against_the_rest_api(server, clips, tmp_path):
    from gradio_client import Client, handle_file

    with standalone_demo(server) as url:
        client = Client(url, verbose=False, download_files=str(tmp_path))
        label, _, _ = client.predict(handle_file(str(clips["mp3"])), api_name="/classify")
        assert label["label"] == rest_answer(server, clips["mp3"])["label"]
        with pytest.raises(Exception, match="limit is"):  # the API's error, shown by the demo
            client.predict(handle_file(str(clips["long"])), api_name="/classify")


def test_standalone_demo_without_an_api_exits_with_one_line(capsys):
    """`python -m demo`'s `main()`, in this process (Gradio's import alone takes seconds)."""
    from demo.__main__ import main

    with pytest.raises(SystemExit) as exit_:
        main(["--api", f"http://127.0.0.1:{free_port()}"])
    stderr = capsys.readouterr().err
    assert exit_.value.code == 1
    assert stderr.strip().startswith("python -m demo: error: cannot reach the REST API")
    assert len(stderr.strip().splitlines()) == 1


@pytest.mark.fast
def test_the_shipped_example_clips_are_what_the_synthesizer_writes(tmp_path):
    """demo/examples/ is package data written by `write_examples`: regenerate it after changing the
    synthesizer: `write_examples('demo/examples')` from pipeline.data.synth."""
    import numpy as np
    import soundfile as sf

    from demo.app import example_clips
    from pipeline.data.synth import write_examples

    fresh, shipped = write_examples(tmp_path), [Path(p) for p in example_clips()]
    assert [p.name for p in fresh] == [p.name for p in shipped]
    for new, old in zip(fresh, shipped):
        assert np.array_equal(sf.read(new)[0], sf.read(old)[0]), old.name


@pytest.mark.fast
def test_each_clip_takes_one_model_call_and_long_ones_get_the_windows_mean(tmp_path):
    """The clip's header decides: under TIMELINE_MIN_S the whole clip, from it the timeline's windows
    (whose mean is the top answer shown); an unreadable file goes to the model call, which says why."""
    import numpy as np
    import soundfile as sf

    from demo.app import SEGMENTS, SPEECH, TIMELINE, TIMELINE_MIN_S, build_demo
    from pipeline.errors import AudioError
    from pipeline.inference.answers import Options

    calls = []

    def classify(path: str, options: Options) -> dict:
        calls.append(options)
        if Path(path).suffix == ".bad":
            raise AudioError(f"{path}: not audio")
        scores = dict.fromkeys(LABELS, 1 / len(LABELS))
        segments = [{"start": 0.0, "end": 2.0, "scores": scores}] if options.timeline else None
        return {"scores": scores, **({"segments": segments} if segments else {})}

    run = build_demo(classify, LABELS, "m").fns[0].fn
    short, long = tmp_path / "short.wav", tmp_path / "long.wav"
    sf.write(short, np.zeros(int(16000 * (TIMELINE_MIN_S - 0.5)), np.float32), 16000)
    sf.write(long, np.zeros(int(16000 * (TIMELINE_MIN_S + 0.5)), np.float32), 16000)
    _, note, plot = run(str(short))
    assert calls == [Options()] and note == "Top answer: the whole clip." and not plot.visible
    _, note, plot = run(str(long))
    assert calls[1:] == [TIMELINE] and note.startswith("Top answer: the mean over the 1 windows")
    assert plot.visible
    _, note, plot = run(str(short), SEGMENTS)
    assert calls[2:] == [SPEECH] and note.startswith("Top answer: the mean over the 1 speech segments")
    assert plot.visible
    bad = tmp_path / "clip.bad"
    bad.write_bytes(b"not audio")
    with pytest.raises(Exception, match="clip.bad: not audio"):
        run(str(bad))
    assert len(calls) == 4


@pytest.mark.fast
def test_the_live_tab_answers_microphone_chunks_and_starts_afresh_for_each_recording():
    """The Live tab's handlers as Gradio calls them: the browser's int16 stereo 48 kHz chunks of
    0.1 s reach the model as 16 kHz float mono; every 0.5 s of audio the newest answer is shown and
    added to the plot, which keeps the last PLOT_S seconds; stopping the recording resets it."""
    import gradio as gr
    import numpy as np

    from demo.app import build_demo
    from demo.live import PLOT_S

    waves = []

    def probabilities(batch: list[np.ndarray]) -> np.ndarray:  # loud: angry, quiet: sad
        waves.extend(batch)
        return np.array(
            [[0.7, 0.1, 0.1, 0.1] if np.abs(w).max() > 0.3 else [0.1, 0.1, 0.1, 0.7] for w in batch]
        )

    def chunk(amplitude: float) -> tuple[int, np.ndarray]:
        tone = amplitude * 32768 * np.sin(2 * np.pi * 440 * np.arange(4800) / 48000)
        return 48000, np.repeat(tone.astype(np.int16)[:, None], 2, axis=1)

    demo = build_demo(lambda path, options: {}, LABELS, "m", live=probabilities)
    handlers = {f.targets[0][1]: f.fn for f in demo.fns.values()}
    on_chunk, stop = handlers["stream"], handlers["stop_recording"]
    state = None

    def record(amplitude: float, seconds: float) -> list:
        """What the tab shows after `seconds` more of the tone: label, status, plot."""
        nonlocal state, shown
        for _ in range(round(seconds * 10)):
            *new, state = on_chunk(chunk(amplitude), state)
            shown = [old if isinstance(v, dict) and v == gr.skip() else v for old, v in zip(shown, new)]
        return shown

    shown = ["from the last recording"] * 3

    assert record(0.5, 0.1) == [None, "Listening…", None] and waves == []
    scores, status, plot = record(0.5, 0.9)
    assert max(scores, key=scores.get) == "angry" and status.endswith(" s heard")
    assert all(w.dtype == np.float32 and w.ndim == 1 for w in waves)
    assert 7000 < len(waves[0]) <= 8000 + 1600 and np.abs(waves[0]).max() == pytest.approx(0.5, abs=0.02)
    scores, status, plot = record(0.1, 3.5)  # the newest answer's 3 s are quiet: sad
    assert max(scores, key=scores.get) == "sad" and len(waves) == 8  # one answer per 0.5 s
    assert len(waves[-1]) == 3 * 16000 and len(plot) == len(waves) * len(LABELS)
    assert set(plot["emotion"]) == set(LABELS)
    _, status, plot = record(0.1, PLOT_S)
    assert (
        len(plot) < len(waves) * len(LABELS)
        and plot["time (s)"].max() - plot["time (s)"].min() < PLOT_S < plot["time (s)"].max()
    )
    state = stop()  # the state Gradio keeps for the next recording
    assert state is None
    assert record(0.5, 0.1) == [None, "Listening…", None]
    scores, _, plot = record(0.5, 0.9)
    assert max(scores, key=scores.get) == "angry" and len(plot) == len(LABELS)
