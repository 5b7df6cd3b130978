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
        finally:
            browser.close()
    assert (ARTIFACTS / "demo.png").stat().st_size > 10_000


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

    from demo.app import TIMELINE, TIMELINE_MIN_S, build_demo
    from pipeline.errors import AudioError
    from pipeline.inference.answers import Options

    calls = []

    def classify(path: str, options: Options) -> dict:
        calls.append(options)
        if Path(path).suffix == ".bad":
            raise AudioError(f"{path}: not audio")
        scores = dict.fromkeys(LABELS, 1 / len(LABELS))
        segments = [{"start": 0.0, "end": 2.0, "scores": scores}] if options.window_s else None
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
    bad = tmp_path / "clip.bad"
    bad.write_bytes(b"not audio")
    with pytest.raises(Exception, match="clip.bad: not audio"):
        run(str(bad))
    assert len(calls) == 3
