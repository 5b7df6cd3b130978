"""Long recordings: voice-activity segments, block-by-block reading and resampling, the timeline
of a recording of any length (bounded memory), and `ser predict --segments vad --output`."""

from __future__ import annotations

import csv
import json
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
from helpers import LABELS, assert_error, make_tiny_checkpoint, post_array, post_audio

from pipeline.data.audio import load_audio, resample, trim_silence
from pipeline.data.blocks import BlockResampler, audio_blocks
from pipeline.data.synth import make_speakers, synthesize_utterance
from pipeline.errors import AudioError, LimitError
from pipeline.inference.answers import Options, classify_wave
from pipeline.inference.predictor import Predictor
from pipeline.inference.recording import TimelineWriter, predict_recording
from pipeline.inference.timeline import classify_blocks, window_starts
from pipeline.inference.vad import DETECTORS, SpeechDetector, VadConfig, speech_segments, split_long

SR = 16_000


def concatenation(n_clips: int, seed: int = 0, noise_db: float = -60.0) -> tuple[np.ndarray, list[tuple]]:
    """Synthetic utterances (the demo corpus's speech) with 0.6-2 s of background noise between
    them: (wave, [(start s, end s, emotion) of each utterance])."""
    rng = np.random.default_rng(seed)
    speakers = make_speakers(4, seed)
    emotions = ["angry", "happy", "neutral", "sad"]
    parts, truth, t = [], [], 0.0
    for i in range(n_clips):
        gap = rng.uniform(0.6, 2.0)
        clip = synthesize_utterance(speakers[i % 4], emotions[i % 4], rng)
        parts += [np.zeros(round(gap * SR), np.float32), clip]
        truth.append((t + gap, t + gap + len(clip) / SR, emotions[i % 4]))
        t += gap + len(clip) / SR
    wave = np.concatenate([*parts, np.zeros(SR, np.float32)])
    wave += (10 ** (noise_db / 20) * rng.standard_normal(len(wave))).astype(np.float32)
    return wave, truth


def overlap(a: tuple, b: tuple) -> float:
    """Intersection over union of two (start, end) intervals."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


@pytest.mark.fast
@pytest.mark.parametrize("detector", DETECTORS)
@pytest.mark.parametrize("noise_db", [-70.0, -45.0])
def test_the_detector_finds_each_utterance_of_a_concatenation(noise_db, detector):
    wave, truth = concatenation(12, noise_db=noise_db)
    found = [(s / SR, e / SR) for s, e in speech_segments(wave, SR, VadConfig(detector=detector))]
    assert len(found) == len(truth)
    for segment, (start, end, _) in zip(found, truth):
        assert overlap(segment, (start, end)) > 0.8, (segment, start, end)


@pytest.mark.fast
def test_quiet_speech_over_rumble_is_found():
    """Speech 20 dB down over low-frequency noise: the energy detector finds 2 of 8 (docs/long_audio.md)."""
    wave, truth = concatenation(8, seed=4, noise_db=-90)
    rumble = np.cumsum(np.random.default_rng(0).standard_normal(len(wave)))  # brown noise
    rumble = np.convolve(rumble - np.convolve(rumble, np.ones(400) / 400, "same"), np.ones(40) / 40, "same")
    wave = 0.1 * wave + (10 ** (-45 / 20) * rumble / rumble.std()).astype(np.float32)
    found = [(s / SR, e / SR) for s, e in speech_segments(wave.astype(np.float32), SR)]
    assert len(found) == len(truth)
    assert all(overlap(f, t[:2]) > 0.5 for f, t in zip(found, truth))


@pytest.mark.fast
def test_short_pauses_stay_inside_a_segment_and_clicks_are_dropped():
    rng = np.random.default_rng(1)
    speech = trim_silence(synthesize_utterance(make_speakers(1, 0)[0], "happy", rng), SR, top_db=30)
    click = 0.5 * np.ones(round(0.05 * SR), np.float32)

    def silence(s):
        return np.zeros(round(s * SR), np.float32)

    wave = np.concatenate([silence(1), speech, silence(0.2), speech, silence(1.5), click, silence(1.5)])
    (segment,) = speech_segments(wave, SR)
    assert segment[0] / SR == pytest.approx(1.0, abs=0.25)
    assert segment[1] / SR == pytest.approx(1 + 2 * len(speech) / SR + 0.2, abs=0.4)
    assert speech_segments(silence(5), SR) == []


@pytest.mark.fast
def test_segments_do_not_depend_on_how_the_recording_is_cut_into_blocks():
    wave, _ = concatenation(6, seed=2, noise_db=-50)
    detector, rng, found, at = SpeechDetector(SR), np.random.default_rng(0), [], 0
    while at < len(wave):
        size = int(rng.integers(1, 3 * SR))
        found += detector.feed(wave[at : at + size])
        at += size
    assert found + detector.finish() == speech_segments(wave, SR)


@pytest.mark.fast
def test_speech_without_pauses_is_cut_at_the_longest_segment():
    wave = np.tile(synthesize_utterance(make_speakers(1, 0)[0], "angry", np.random.default_rng(0)), 30)
    found = speech_segments(wave, SR, VadConfig(max_segment_s=5.0, min_silence_s=1.0))
    assert len(found) > 3
    assert all(e - s <= 5 * SR + 0.2 * SR for s, e in found)
    assert all(a[1] <= b[0] for a, b in zip(found, found[1:]))


@pytest.mark.fast
def test_a_long_segment_is_cut_into_windows_like_a_clip():
    assert list(split_long(100, 150, 100, 50)) == [(100, 150)]
    pieces = list(split_long(1000, 1350, 100, 100))
    assert [s - 1000 for s, _ in pieces] == window_starts(350, 100, 100)
    assert all(e - s == 100 for s, e in pieces) and pieces[-1][1] == 1350


@pytest.mark.fast
@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000, 44101, 16000])
def test_resampling_block_by_block_equals_resampling_whole(rate):
    rng = np.random.default_rng(rate)
    wave = rng.standard_normal(rate * 2 + 77).astype(np.float32)
    resampler, parts, at = BlockResampler(rate), [], 0
    while at < len(wave):
        size = int(rng.integers(1, rate))
        parts.append(resampler.feed(wave[at : at + size]))
        at += size
    streamed = np.concatenate([*parts, resampler.finish()])
    whole = resample(wave, rate, SR)
    assert streamed.shape == whole.shape
    np.testing.assert_allclose(streamed, whole, atol=2e-6)


@pytest.mark.fast
def test_a_file_read_in_blocks_is_the_file_read_whole(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "stereo44k.flac"
    sf.write(path, (0.3 * rng.standard_normal((44100 * 5, 2))).astype(np.float32), 44100, subtype="PCM_16")
    blocks = list(audio_blocks(path, SR, block_s=0.7))
    assert len(blocks) > 5
    np.testing.assert_allclose(np.concatenate(blocks), load_audio(path), atol=1e-5)
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really")
    with pytest.raises(AudioError, match="bad.wav: not a readable audio file"):
        list(audio_blocks(tmp_path / "bad.wav"))


def spans_of(options: Options, wave: np.ndarray, block: int) -> list[tuple[int, int]]:
    spans = options.spans(SR)
    found = []
    for at in range(0, len(wave), block):
        found += spans.feed(wave[at : at + block])
    return found + spans.finish()


@pytest.mark.fast
@pytest.mark.parametrize("seconds", [0.7, 2.0, 9.3, 20.0])
def test_fixed_windows_found_block_by_block_are_the_clips_windows(seconds):
    wave = np.zeros(round(seconds * SR), np.float32)
    options = Options(window_s=2.0, hop_s=0.5)
    window, hop = 2 * SR, SR // 2
    expected = [(s, min(s + window, len(wave))) for s in window_starts(len(wave), window, hop)]
    for block in (SR // 3, SR, 7 * SR, len(wave)):
        assert spans_of(options, wave, block) == expected


def uniform(waves: list[np.ndarray]) -> np.ndarray:
    return np.full((len(waves), 4), 0.25)


@pytest.mark.fast
def test_a_recording_of_any_length_is_classified_in_bounded_memory():
    """20 minutes of blocks (77 MB as float32) go through holding a few seconds of them."""

    def hour():
        utterance = synthesize_utterance(make_speakers(1, 0)[0], "sad", np.random.default_rng(0))
        speech = np.resize(trim_silence(utterance, SR, top_db=30), 2 * SR)
        block = np.concatenate([speech, np.zeros(SR, np.float32)])  # 2 s of speech, 1 s of pause
        for _ in range(400):
            yield block.copy()

    for options in (Options(segments="vad"), Options(window_s=2.0, hop_s=1.0)):
        tracemalloc.start()
        count = sum(1 for _ in classify_blocks(hour(), options.spans(SR), uniform))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert count == (400 if options.segments else 1199)
        assert peak < 10 * 2**20, f"{peak / 2**20:.1f} MB held"


@pytest.fixture(scope="module")
def tiny_predictor(tmp_path_factory) -> Predictor:
    return Predictor.from_pretrained(make_tiny_checkpoint(tmp_path_factory.mktemp("tiny")), precision="fp32")


@pytest.mark.fast
@pytest.mark.parametrize("options", [Options(segments="vad"), Options(window_s=2.0, hop_s=0.5, top_k=2)])
def test_a_recording_read_in_blocks_gets_the_answer_of_the_whole_clip(tmp_path, tiny_predictor, options):
    wave, _ = concatenation(5, seed=3)
    path = tmp_path / "story.wav"
    sf.write(path, wave, SR, subtype="FLOAT")
    p = tiny_predictor
    whole = classify_wave(load_audio(path), SR, p.labels, p.probabilities, options)
    streamed = predict_recording(str(path), p, options, batch_size=3)
    assert [(s["start"], s["end"]) for s in streamed["segments"]] == [
        (s["start"], s["end"]) for s in whole["segments"]
    ]
    for a, b in zip(streamed["segments"], whole["segments"]):
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-5)
    assert streamed["scores"] == pytest.approx(whole["scores"], abs=1e-5)
    assert streamed["duration_s"] == whole["duration_s"]

    for name in ("timeline.csv", "timeline.jsonl"):
        with open(tmp_path / name, "w", newline="") as sink:
            writer = TimelineWriter(sink, TimelineWriter.kind_of(name), p.labels)
            written = predict_recording(str(path), p, options, writer)
        assert written["segments_written"] == len(whole["segments"]) and "segments" not in written
        text = (tmp_path / name).read_text()
        if name.endswith(".csv"):
            rows = list(csv.DictReader(text.splitlines()))
            assert list(rows[0]) == ["file", "start", "end", "label", "score", *LABELS]
            assert [float(r["start"]) for r in rows] == [s["start"] for s in whole["segments"]]
        else:
            rows = [json.loads(line) for line in text.splitlines()]
            assert [r["label"] for r in rows] == [s["label"] for s in whole["segments"]]


@pytest.mark.fast
def test_no_speech_is_a_clear_refusal(tiny_predictor):
    p = tiny_predictor
    with pytest.raises(LimitError, match="no speech found"):
        classify_wave(np.zeros(3 * SR, np.float32), SR, p.labels, p.probabilities, Options(segments="vad"))


def test_predict_writes_the_timeline_of_a_long_file(default_training, tmp_path, ser_here):
    """The trained default model on demo utterances of four emotions with pauses between them:
    the CLI finds each utterance and names its emotion."""
    wave, truth = concatenation(16, seed=5, noise_db=-55)
    long_file = tmp_path / "long.flac"
    sf.write(long_file, resample(wave, SR, 44100), 44100, subtype="PCM_16")
    checkpoint = str(default_training / "best")
    out = tmp_path / "timeline.csv"
    done = ser_here(
        "predict", "--checkpoint", checkpoint, "--segments", "vad", "--output", str(out), str(long_file)
    )
    summary = json.loads(done.stdout)
    assert summary["segments_written"] == len(truth)
    rows = list(csv.DictReader(out.read_text().splitlines()))
    for row, (start, end, _) in zip(rows, truth):
        assert overlap((float(row["start"]), float(row["end"])), (start, end)) > 0.8
    right = sum(row["label"] == emotion for row, (_, _, emotion) in zip(rows, truth))
    assert right >= 0.75 * len(truth), [r["label"] for r in rows]

    for args, message in [
        (["--output", str(tmp_path / "t.txt"), "--segments", "vad"], "name a .jsonl or .csv file"),
        (["--segments", "vad", "--vad-threshold", "1.5"], "a probability between 0 and 1, got 1.5"),
        (
            ["--segments", "vad", "--vad-min-silence-s", "-1"],
            "min_silence_s must be between 0 and 60 s, got -1.0",
        ),
        (["--output", str(out)], "--output writes a timeline: add --segments vad or --window-s"),
    ]:
        bad = ser_here("predict", "--checkpoint", checkpoint, *args, str(long_file), check=False)
        assert bad.returncode == 2 and bad.stderr.strip().endswith(message), bad.stderr
    hour_long = tmp_path / "silence.wav"
    sf.write(hour_long, np.zeros(61 * SR, np.int16), SR)
    bad = ser_here("predict", "--checkpoint", checkpoint, str(hour_long), check=False)
    assert bad.returncode == 2 and "add --segments vad" in bad.stderr and len(bad.stderr.splitlines()) == 1


def test_rest_answers_speech_segments_as_the_library_does(server, service_checkpoint, tmp_path):
    wave, truth = concatenation(4, seed=7)
    path = tmp_path / "four.wav"
    sf.write(path, wave, SR, subtype="PCM_16")
    answer = post_audio(server, "four.wav", path.read_bytes(), segments="vad")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert len(body["segments"]) == len(truth)
    p = Predictor.from_pretrained(service_checkpoint, precision="fp32")
    local = classify_wave(load_audio(path), SR, p.labels, p.probabilities, Options(segments="vad"))
    assert [(s["start"], s["end"]) for s in body["segments"]] == [
        (s["start"], s["end"]) for s in local["segments"]
    ]
    assert body["scores"] == pytest.approx(local["scores"], abs=1e-4)
    silent = post_array(server, np.zeros(SR * 2).tolist(), segments="vad")
    assert "no speech found" in assert_error(silent, 422)
    assert "segments" in assert_error(post_array(server, wave[:SR].tolist(), segments="words"), 400)
