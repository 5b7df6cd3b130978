"""Fast unit tests, in this process, of the pure logic that the server tests (test_service.py,
test_bad_input.py) and the `ser predict` tests (test_cli.py) reach only through a live BentoML
server or a subprocess:

- `pipeline.timeline`: where windows go and how the answer is built from them, with a fake
  probabilities function standing in for the model;
- `pipeline.audio`: decoding real files written to tmp_path, downmixing, resampling, and the
  AudioError (status and message) for each kind of bad audio;
- `pipeline.data.wav_header`: the WAV header checks, on bytes built here with `struct`.
"""

from __future__ import annotations

import io
import math
import os
import re
import struct

import numpy as np
import pytest
import soundfile as sf
from helpers import LABELS, tone, wav_bytes, write_tone

from pipeline.data.audio import (
    MAX_RESAMPLING_KERNEL,
    check_format,
    decoder_messages_silenced,
    load_audio,
    load_samples,
    resample,
    resampling_kernel_size,
    resampling_ratio,
    save_wav,
    to_mono,
    trim_silence,
)
from pipeline.data.wav_header import check_wav
from pipeline.errors import AudioError, InputError
from pipeline.inference.answers import MAX_WINDOWS, Options, classify_wave
from pipeline.inference.timeline import window_starts
from service.inputs import status_of

pytestmark = pytest.mark.fast

SR = 16_000
NAN, INF = float("nan"), float("inf")


# ---------------------------------------------------------------------------------------------------
# pipeline.timeline
# ---------------------------------------------------------------------------------------------------


def row_for(start: int) -> np.ndarray:
    """The fake model's probabilities for the window starting at sample `start`: a different row for
    every start, summing to 1."""
    return np.random.default_rng(start).dirichlet(np.ones(len(LABELS)))


class FakeModel:
    """A probabilities function: one row per wave, chosen by the wave's first sample (the clips are
    ramps, so that is the window's start); it records (start, length) of the waves of every call."""

    def __init__(self, rows: dict[int, list[float]] | None = None):
        self.rows = rows
        self.calls: list[list[tuple[int, int]]] = []

    def __call__(self, waves: list[np.ndarray]) -> np.ndarray:
        self.calls.append([(int(w[0]), len(w)) for w in waves])
        if self.rows is not None:
            return np.array([self.rows[int(w[0])] for w in waves])
        return np.stack([row_for(int(w[0])) for w in waves])


def constant(probabilities: list[float]) -> FakeModel:
    """A fake model answering `probabilities` for a clip of zeros (every window starts with 0.0)."""
    return FakeModel({0: probabilities})


def ramp(seconds: float) -> np.ndarray:
    """A clip whose every sample is its own index, so that a window's first sample is its start."""
    return np.arange(round(seconds * SR), dtype=np.float64)


@pytest.mark.parametrize(
    "n, window, hop, starts",
    [
        pytest.param(100, 30, 20, [0, 20, 40, 60, 70], id="last-window-aligned-to-the-end"),
        pytest.param(90, 30, 30, [0, 30, 60], id="exact-fit-no-duplicate-last-window"),
        pytest.param(91, 30, 30, [0, 30, 60, 61], id="one-sample-over"),
        pytest.param(30, 30, 10, [0], id="clip-as-long-as-the-window"),
        pytest.param(10, 30, 10, [0], id="clip-shorter-than-the-window"),
        pytest.param(100, 20, 40, [0, 40, 80], id="hop-longer-than-the-window"),
        pytest.param(31, 30, 100, [0, 1], id="hop-longer-than-the-clip"),
        pytest.param(5, 1, 1, [0, 1, 2, 3, 4], id="every-sample"),
        pytest.param(1, 1, 1, [0], id="one-sample"),
    ],
)
def test_window_starts(n, window, hop, starts):
    assert window_starts(n, window, hop) == starts


@pytest.mark.parametrize("n", [1, 7, 100, 1001, 48_000])
@pytest.mark.parametrize("window, hop", [(1, 1), (10, 3), (10, 10), (10, 25), (997, 500)])
def test_windows_every_hop_all_inside_the_clip_the_last_at_its_end(n, window, hop):
    starts = window_starts(n, window, hop)
    length = min(window, n)  # the caller clamps the window to the clip
    assert starts[0] == 0
    assert starts[-1] + length == n
    assert all(s + length <= n for s in starts)
    assert [b - a for a, b in zip(starts[:-1], starts[1:-1])] == [hop] * (len(starts) - 2)
    assert all(0 < b - a <= hop for a, b in zip(starts, starts[1:]))
    assert len(starts) == (1 if n <= window else math.ceil((n - window) / hop) + 1)


TIMELINES = [
    pytest.param(
        9.3, 2, 1, [(s, s + 2) for s in range(8)] + [(7.3, 9.3)], id="9.3s-window-2-hop-1-last-at-end"
    ),
    pytest.param(6.0, 2, None, [(0, 2), (2, 4), (4, 6)], id="hop-defaults-to-window"),
    pytest.param(5.0, 2, None, [(0, 2), (2, 4), (3, 5)], id="last-window-overlaps-to-fit"),
    pytest.param(10.0, 4, 3, [(0, 4), (3, 7), (6, 10)], id="overlapping-exact-fit"),
    pytest.param(3.0, 1, 5, [(0, 1), (2, 3)], id="hop-longer-than-the-clip"),
    pytest.param(0.75, 0.5, None, [(0, 0.5), (0.25, 0.75)], id="smallest-window"),
    pytest.param(
        1.0,
        0.5,
        0.1,
        [(0, 0.5), (0.1, 0.6), (0.2, 0.7), (0.3, 0.8), (0.4, 0.9), (0.5, 1.0)],
        id="smallest-hop",
    ),
    pytest.param(1.0, 2, None, [(0, 1.0)], id="clip-shorter-than-the-window"),
    pytest.param(1.0, 1e308, 1e300, [(0, 1.0)], id="enormous-window-is-the-clip"),
    pytest.param(0.1, 0.5, 0.1, [(0, 0.1)], id="shortest-clip"),
]


@pytest.mark.parametrize("seconds, window_s, hop_s, expected", TIMELINES)
def test_timeline_windows(seconds, window_s, hop_s, expected):
    model = FakeModel()
    answer = classify_wave(ramp(seconds), SR, LABELS, model, Options(window_s=window_s, hop_s=hop_s))
    assert [(s["start"], s["end"]) for s in answer["segments"]] == expected
    length = round(min(window_s, seconds) * SR)  # every window is as long as the first
    assert model.calls == [[(round(start * SR), length) for start, _ in expected]]  # one call, in order
    assert answer["duration_s"] == seconds


def test_segments_carry_their_windows_probabilities_and_the_answer_is_their_mean():
    model = FakeModel()
    answer = classify_wave(ramp(9.3), SR, LABELS, model, Options(window_s=2, hop_s=1))
    assert set(answer) == {"label", "score", "scores", "duration_s", "segments"}
    rows = []
    for segment in answer["segments"]:
        assert set(segment) == {"start", "end", "label", "score", "scores"}
        row = row_for(round(segment["start"] * SR))
        rows.append(row)
        assert list(segment["scores"]) == LABELS
        assert list(segment["scores"].values()) == pytest.approx(row.tolist())
        assert segment["label"] == LABELS[int(np.argmax(row))]
        assert segment["score"] == pytest.approx(row.max()) == max(segment["scores"].values())
    mean = np.mean(rows, axis=0)
    assert len(rows) == 9
    assert list(answer["scores"]) == LABELS
    assert list(answer["scores"].values()) == pytest.approx(mean.tolist(), abs=1e-12)
    assert sum(answer["scores"].values()) == pytest.approx(1.0, abs=1e-9)
    assert answer["label"] == LABELS[int(np.argmax(mean))]
    assert answer["score"] == pytest.approx(mean.max())
    assert list(answer["scores"].values()) != pytest.approx(row_for(0).tolist())  # not the first window's


def test_the_answer_is_the_mean_of_the_windows_not_their_vote():
    """Two windows vote angry, one (very sure) sad: the mean says sad."""
    rows = {0: [0.4, 0.3, 0.3, 0.0], SR: [0.4, 0.3, 0.3, 0.0], 2 * SR: [0.0, 0.0, 0.0, 1.0]}
    answer = classify_wave(ramp(3.0), SR, LABELS, FakeModel(rows), Options(window_s=1))
    assert [s["label"] for s in answer["segments"]] == ["angry", "angry", "sad"]
    assert answer["label"] == "sad"
    assert answer["scores"] == pytest.approx({"angry": 0.8 / 3, "happy": 0.2, "neutral": 0.2, "sad": 1 / 3})


def test_the_whole_clip_is_one_call_without_a_window():
    model = FakeModel()
    answer = classify_wave(ramp(1.5), SR, LABELS, model)
    row = row_for(0)
    assert model.calls == [[(0, 24_000)]]
    assert answer == {
        "label": LABELS[int(np.argmax(row))],
        "score": float(row.max()),
        "scores": dict(zip(LABELS, row.tolist())),
        "duration_s": 1.5,
    }
    assert isinstance(answer["score"], float) and all(type(v) is float for v in answer["scores"].values())


@pytest.mark.parametrize(
    "samples, duration_s", [(19_753, 1.235), (16_001, 1.0), (1_600, 0.1), (24_016, 1.501)]
)
def test_duration_is_rounded_to_milliseconds(samples, duration_s):
    answer = classify_wave(np.zeros(samples), SR, LABELS, constant([0.1, 0.2, 0.3, 0.4]))
    assert answer["duration_s"] == duration_s


@pytest.mark.parametrize(
    "probabilities, top_k, expected, label",
    [
        pytest.param([0.3, 0.1, 0.2, 0.4], 1, ["sad"], "sad", id="top-1"),
        pytest.param([0.3, 0.1, 0.2, 0.4], 2, ["sad", "angry"], "sad", id="top-2"),
        pytest.param([0.3, 0.1, 0.2, 0.4], 4, ["sad", "angry", "neutral", "happy"], "sad", id="top-all"),
        pytest.param([0.3, 0.1, 0.2, 0.4], None, LABELS, "sad", id="none-is-label-order"),
        pytest.param([0.3, 0.3, 0.2, 0.2], 3, ["angry", "happy", "neutral"], "angry", id="ties-label-order"),
    ],
)
def test_top_k_answers_the_best_labels_first(probabilities, top_k, expected, label):
    answer = classify_wave(np.zeros(SR), SR, LABELS, constant(probabilities), Options(top_k=top_k))
    assert list(answer["scores"]) == expected
    assert answer["scores"] == pytest.approx({k: probabilities[LABELS.index(k)] for k in expected})
    assert answer["label"] == label
    assert answer["score"] == pytest.approx(max(probabilities))


def test_top_k_applies_to_every_segment_and_to_the_mean_of_the_full_rows():
    rows = {0: [0.5, 0.4, 0.05, 0.05], SR: [0.05, 0.4, 0.05, 0.5]}
    answer = classify_wave(ramp(2.0), SR, LABELS, FakeModel(rows), Options(top_k=2, window_s=1))
    first, second = answer["segments"]
    assert first["scores"] == pytest.approx({"angry": 0.5, "happy": 0.4})
    assert list(first["scores"]) == ["angry", "happy"]
    assert second["scores"] == pytest.approx({"sad": 0.5, "happy": 0.4})
    assert list(second["scores"]) == ["sad", "happy"]
    # mean: angry 0.275, happy 0.4, neutral 0.05, sad 0.275 (the tie keeps label order)
    assert list(answer["scores"]) == ["happy", "angry"]
    assert answer["scores"] == pytest.approx({"happy": 0.4, "angry": 0.275})
    assert (answer["label"], answer["score"]) == ("happy", pytest.approx(0.4))


@pytest.mark.parametrize(
    "options, message",
    [
        (Options(top_k=0), "top_k must be between 1 and 4, got 0"),
        (Options(top_k=5), "top_k must be between 1 and 4, got 5"),
        (Options(top_k=-1), "top_k must be between 1 and 4, got -1"),
        (Options(hop_s=1.0), "hop_s needs window_s"),
        (Options(window_s=0.49), "window_s must be at least 0.5 s and finite, got 0.49"),
        (Options(window_s=-1.0), "window_s must be at least 0.5 s and finite, got -1.0"),
        (Options(window_s=NAN), "window_s must be at least 0.5 s and finite, got nan"),
        (Options(window_s=INF), "window_s must be at least 0.5 s and finite, got inf"),
        (Options(window_s=1, hop_s=0.09), "hop_s must be at least 0.1 s and finite, got 0.09"),
        (Options(window_s=1, hop_s=0.0), "hop_s must be at least 0.1 s and finite, got 0.0"),
        (Options(window_s=1, hop_s=NAN), "hop_s must be at least 0.1 s and finite, got nan"),
        (Options(window_s=1, hop_s=INF), "hop_s must be at least 0.1 s and finite, got inf"),
        (Options(top_k=9, window_s=0.1), "top_k must be between 1 and 4, got 9"),  # top_k is checked first
    ],
)
def test_bad_options_are_refused_with_422_before_the_model_runs(options, message):
    model = FakeModel()
    with pytest.raises(InputError) as err:
        classify_wave(ramp(1.0), SR, LABELS, model, options)
    assert str(err.value) == message
    assert status_of(err.value) == 422
    assert model.calls == []


def test_options_check_counts_the_labels():
    with pytest.raises(InputError, match=r"^top_k must be between 1 and 2, got 3$"):
        Options(top_k=3).check(2)
    assert Options(top_k=2).check(2) is None


@pytest.mark.parametrize("options", [Options(top_k=1), Options(top_k=4), Options(window_s=0.5, hop_s=0.1)])
def test_options_at_their_limits_are_accepted(options):
    answer = classify_wave(ramp(1.0), SR, LABELS, FakeModel(), options)
    assert len(answer["scores"]) == (options.top_k or len(LABELS))
    assert len(answer.get("segments", [])) == (6 if options.window_s else 0)


@pytest.mark.parametrize("options", [Options(), Options(window_s=1)])
@pytest.mark.parametrize(
    "samples, message",
    [
        (1_599, "audio is 0.099 s long, the minimum is 0.1 s"),
        (0, "audio is 0.000 s long, the minimum is 0.1 s"),
    ],
)
def test_a_clip_under_a_tenth_of_a_second_is_refused(options, samples, message):
    model = FakeModel()
    with pytest.raises(InputError) as err:
        classify_wave(np.zeros(samples), SR, LABELS, model, options)
    assert (str(err.value), status_of(err.value)) == (message, 422)
    assert model.calls == []


def test_at_most_a_thousand_windows():
    window, hop = 8_000, 1_600  # 0.5 s every 0.1 s
    longest = window + (MAX_WINDOWS - 1) * hop  # exactly MAX_WINDOWS windows
    options = Options(window_s=0.5, hop_s=0.1)
    answer = classify_wave(np.arange(longest, dtype=np.float64), SR, LABELS, FakeModel(), options)
    assert len(answer["segments"]) == MAX_WINDOWS == 1000
    assert answer["segments"][-1]["end"] == answer["duration_s"] == longest / SR
    model = FakeModel()
    with pytest.raises(InputError) as err:
        classify_wave(np.arange(longest + 1, dtype=np.float64), SR, LABELS, model, options)
    assert str(err.value) == "1001 windows: the limit is 1000; use a longer hop_s"
    assert status_of(err.value) == 422
    assert model.calls == []


def test_windows_start_every_hop_to_the_sample():
    answer = classify_wave(ramp(20.0), SR, LABELS, FakeModel(), Options(window_s=1.001, hop_s=1.001))
    starts = [s["start"] for s in answer["segments"]]
    assert starts[:-1] == [round(k * 1.001, 3) for k in range(len(starts) - 1)]
    assert all(s["end"] - s["start"] == pytest.approx(1.001, abs=1e-9) for s in answer["segments"])


# ---------------------------------------------------------------------------------------------------
# pipeline.audio
# ---------------------------------------------------------------------------------------------------


def dominant_frequency(wave: np.ndarray, sr: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / sr)[spectrum.argmax()])


@pytest.mark.parametrize(
    "name, fmt, sr, channels, f0",
    [
        ("mono16k.wav", None, 16_000, 1, 180),
        ("surround48k.wav", None, 48_000, 6, 300),
        ("stereo44k.flac", None, 44_100, 2, 220),
        ("mono8k.flac", None, 8_000, 1, 150),
        ("clip22k.ogg", None, 22_050, 1, 140),
        ("clip44k.mp3", "MP3", 44_100, 1, 260),
        ("odd-rate-44101.wav", None, 44_101, 1, 180),
        ("lowest-rate-1k.wav", None, 1_000, 1, 180),
        ("highest-rate-384k.wav", None, 384_000, 1, 200),
    ],
)
def test_any_format_rate_and_channels_decode_to_16k_mono_float32(tmp_path, name, fmt, sr, channels, f0):
    path = write_tone(tmp_path / name, fmt=fmt, seconds=1.0, sr=sr, channels=channels, f0=f0)
    wave = load_audio(path)
    assert (wave.dtype, wave.ndim, len(wave)) == (np.float32, 1, SR)
    assert wave.flags["C_CONTIGUOUS"]
    assert dominant_frequency(wave) == pytest.approx(f0, abs=1)  # resampled to the right rate
    assert 0.1 < np.abs(wave).max() < 0.5  # the tone's level (0.3 plus a little noise), not silence
    assert np.array_equal(load_audio(path.read_bytes()), wave)  # bytes decode like the file


def test_channels_are_averaged(tmp_path):
    data = tone(0.5, channels=3)  # channels at 1, 0.8 and 0.6 times the first
    sf.write(tmp_path / "three.wav", data, SR, subtype="FLOAT")
    wave = load_audio(tmp_path / "three.wav")
    assert np.allclose(wave, 0.8 * data[:, 0], atol=1e-6)
    assert not np.allclose(wave, data[:, 0], atol=1e-3)


def test_16k_mono_float_is_returned_unchanged(tmp_path):
    data = tone(0.5)
    sf.write(tmp_path / "float.wav", data, SR, subtype="FLOAT")
    assert np.array_equal(load_audio(tmp_path / "float.wav"), data)


def test_resampling_to_another_target_rate(tmp_path):
    path = write_tone(tmp_path / "clip.wav", seconds=0.5, sr=44_100, f0=220)
    wave = load_audio(path, target_sr=8_000)
    assert len(wave) == 4_000
    assert dominant_frequency(wave, 8_000) == pytest.approx(220, abs=2)


def riff(*chunks: bytes, riff_size: int | None = None, form: bytes = b"WAVE") -> bytes:
    body = form + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body) if riff_size is None else riff_size) + body


def chunk(chunk_id: bytes, body: bytes, size: int | None = None, pad: bool = True) -> bytes:
    """A RIFF chunk: its header announces `size` (default: the truth); odd bodies get a pad byte."""
    padding = b"\0" if pad and len(body) % 2 else b""
    return chunk_id + struct.pack("<I", len(body) if size is None else size) + body + padding


def fmt(rate: int = SR, channels: int = 1, bits: int = 16, tag: int = 1) -> bytes:
    """A 'fmt ' chunk (tag 1: integer PCM, 3: IEEE float)."""
    align = channels * bits // 8
    return chunk(b"fmt ", struct.pack("<HHIIHH", tag, channels, rate, rate * align % 2**32, align, bits))


PCM = (tone(1.0) * 32767).astype("<i2").tobytes()  # 1 s of 16-bit mono at 16 kHz
GOOD = riff(fmt(), chunk(b"data", PCM))  # 32044 bytes


def floats(*values: float) -> bytes:
    return riff(fmt(tag=3, bits=32), chunk(b"data", np.array([*values, *tone(0.5)], "<f4").tobytes()))


def bad_audio(id: str, content: bytes, status: int, *fragments: str) -> pytest.param:
    return pytest.param(content, status, fragments, id=id)


BAD_AUDIO = [
    bad_audio(
        "text", b"these are meeting notes\n" * 20, 400, "not a readable audio file (Format not recognised"
    ),
    bad_audio("riff-then-junk", b"RIFF" + bytes(range(256)) * 8, 400, "not a readable audio file ("),
    bad_audio("cut-in-the-header", wav_bytes()[:40], 400, "not a readable audio file (", "'data' chunk"),
    bad_audio("header-only", wav_bytes()[:44], 400, "audio has no samples"),
    bad_audio("zero-length-data", riff(fmt(), chunk(b"data", b"")), 400, "audio has no samples"),
    bad_audio("half-a-sample", riff(fmt(), chunk(b"data", b"\x01")), 400, "audio has no samples"),
    bad_audio("block-align-zero", riff(fmt(bits=0), chunk(b"data", PCM)), 400, "not a readable audio file ("),
    bad_audio("random-bytes", np.random.default_rng(0).bytes(5000), 400, "not a readable audio file ("),
    bad_audio("nan", floats(NAN), 400, "audio contains NaN or infinite samples"),
    bad_audio("infinity", floats(INF), 400, "audio contains NaN or infinite samples"),
    bad_audio("minus-infinity", floats(0.0, -INF), 400, "audio contains NaN or infinite samples"),
    bad_audio(
        "500-Hz",
        riff(fmt(rate=500), chunk(b"data", PCM)),
        422,
        "sampling rate 500 Hz is outside 1000-384000 Hz",
    ),
    bad_audio(
        "400-kHz",
        riff(fmt(rate=400_000), chunk(b"data", PCM)),
        422,
        "sampling rate 400000 Hz is outside 1000-384000 Hz",
    ),
    bad_audio(
        "100-channels",
        riff(fmt(channels=100), chunk(b"data", bytes(200 * 16))),
        422,
        "100 channels, the limit is 64",
    ),
]


def assert_audio_error(err: pytest.ExceptionInfo, name: str, status: int, fragments: tuple[str, ...]) -> None:
    message = str(err.value)
    assert message.startswith(f"{name}: "), message
    assert all(fragment in message for fragment in fragments), message
    assert status_of(err.value) == status
    assert "BytesIO" not in message and "SoundFile" not in message and " object at 0x" not in message


@pytest.mark.parametrize("content, status, fragments", BAD_AUDIO)
def test_bad_audio_files_are_refused(tmp_path, content, status, fragments):
    path = tmp_path / "clip.wav"
    path.write_bytes(content)
    with pytest.raises(InputError) as err:
        load_audio(path)
    assert_audio_error(err, str(path), status, fragments)


@pytest.mark.parametrize("content, status, fragments", BAD_AUDIO)
def test_bad_audio_bytes_are_refused_as_the_upload(content, status, fragments):
    with pytest.raises(InputError) as err:
        load_audio(content)
    assert_audio_error(err, "upload", status, fragments)


def test_undecodable_audio_keeps_libsndfile_error_as_its_cause():
    with pytest.raises(InputError) as err:
        load_audio(b"not audio" * 50)
    assert isinstance(err.value.__cause__, sf.LibsndfileError)


def test_an_empty_file_and_an_empty_upload(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(InputError) as err:
        load_audio(tmp_path / "empty.wav")
    assert_audio_error(err, str(tmp_path / "empty.wav"), 400, ("empty file (0 bytes)",))
    with pytest.raises(InputError) as err:
        load_audio(b"")
    assert (str(err.value), status_of(err.value)) == ("empty upload: no audio bytes received", 400)


@pytest.mark.parametrize("where", ["missing.wav", "a-directory"])
def test_a_path_that_is_not_a_file(tmp_path, where):
    (tmp_path / "a-directory").mkdir()
    with pytest.raises(InputError) as err:
        load_audio(tmp_path / where)
    assert (str(err.value), status_of(err.value)) == (f"audio file not found: {tmp_path / where}", 400)


def test_a_wav_whose_data_chunk_claims_more_than_it_holds_decodes_what_is_there():
    """Why pipeline.data.wav_header exists: libsndfile decodes the truncated file as if it were whole."""
    lying = riff(fmt(), chunk(b"data", PCM, size=2 * len(PCM)))
    assert len(load_audio(lying)) == SR


@pytest.mark.parametrize(
    "seconds, sr, max_seconds, message",
    [
        (2.0, SR, 2.0, None),
        (2.1, SR, 2.0, "audio is 2.1 s long, the limit is 2 s"),
        (3.0, 44_100, 2.5, "audio is 3.0 s long, the limit is 2.5 s"),
        (2.5, 44_100, 2.5, None),
        (21.0, SR, 20, "audio is 21.0 s long, the limit is 20 s"),
        (21.0, SR, None, None),
    ],
)
def test_the_duration_limit(tmp_path, seconds, sr, max_seconds, message):
    path = write_tone(tmp_path / "clip.flac", seconds=seconds, sr=sr)
    if message is None:
        assert len(load_audio(path, max_seconds=max_seconds)) == round(seconds * SR)
        return
    with pytest.raises(InputError) as err:
        load_audio(path, max_seconds=max_seconds)
    assert_audio_error(err, str(path), 422, (message,))


def mp3_announcing(frames_field: int) -> bytes:
    """Half a second of MP3 whose Xing header announces `frames_field` MPEG frames."""
    buffer = io.BytesIO()
    sf.write(buffer, tone(0.5), SR, format="MP3")
    data = buffer.getvalue()
    at = data.index(b"Xing") + 8  # after the tag and its flags
    return data[:at] + struct.pack(">I", frames_field) + data[at + 4 :]


def test_a_header_announcing_trillions_of_frames_decodes_the_frames_there():
    """Found by the fuzz test: `ser predict` (no duration limit) read such a file in one piece and
    failed to allocate 9 TB (MemoryError, with a traceback). The service refuses it from the header."""
    lying = mp3_announcing(0xFFFFFFFF)
    assert sf.info(io.BytesIO(lying)).frames > 10**12
    assert len(load_audio(lying)) == pytest.approx(0.5 * SR, abs=0.05 * SR)
    with pytest.raises(InputError) as err:
        load_audio(lying, max_seconds=20)
    assert_audio_error(err, "upload", 422, ("the limit is 20 s",))


def scaled_tone(peak: float) -> np.ndarray:
    return tone(0.5) / np.abs(tone(0.5)).max() * np.float32(peak)


def float_wav(wave: np.ndarray) -> bytes:
    return riff(fmt(tag=3, bits=32), chunk(b"data", wave.astype("<f4").tobytes()))


@pytest.mark.parametrize("peak", [1.0, 32767.0, 2.0**31])
def test_samples_up_to_32_bit_full_scale_are_accepted(peak):
    assert np.isfinite(load_audio(float_wav(scaled_tone(peak)))).all()
    assert np.isfinite(load_samples(scaled_tone(peak), SR)).all()


@pytest.mark.parametrize("peak", [1e10, 3e38])
def test_samples_beyond_32_bit_full_scale_are_refused(peak):
    """A float WAV with a sample of 3e38 was answered 200 with null scores: the model's input
    normalisation overflowed float32 (past about 1e18 the answer already drifted)."""
    for decode in (
        lambda: load_audio(float_wav(scaled_tone(peak))),
        lambda: load_samples(scaled_tone(peak), SR),
    ):
        with pytest.raises(InputError) as err:
            decode()
        assert status_of(err.value) == 422 and "the limit is 2147483648" in str(err.value)


def test_decoder_messages_are_silenced_for_the_block_only(capfd):
    """libmpg123 writes to file descriptor 2 itself; `ser predict` silences it while decoding."""
    os.write(2, b"before\n")
    with decoder_messages_silenced():
        os.write(2, b"libmpg123 note\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "before\nafter\n"


FRAMES = np.stack([np.full(1600, 0.2), np.full(1600, -0.4)], axis=1)


@pytest.mark.parametrize(
    "samples, sr, expected",
    [
        pytest.param([0.1] * 1600, SR, np.full(1600, 0.1, np.float32), id="list-of-numbers"),
        pytest.param(FRAMES.tolist(), SR, np.full(1600, -0.1, np.float32), id="frames-are-averaged"),
        pytest.param(FRAMES, SR, np.full(1600, -0.1, np.float32), id="numpy-frames"),
        pytest.param(np.full((1600, 1), 0.5), SR, np.full(1600, 0.5, np.float32), id="one-channel-frames"),
    ],
)
def test_load_samples(samples, sr, expected):
    wave = load_samples(samples, sr)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert np.allclose(wave, expected, atol=1e-7)


def test_load_samples_resamples():
    wave = load_samples(tone(0.5, sr=44_100, f0=220).tolist(), 44_100)
    assert len(wave) == 8_000
    assert dominant_frequency(wave) == pytest.approx(220, abs=2)


RAGGED = "samples must be numbers, or frames with the same number of channels"


@pytest.mark.parametrize(
    "samples, sr, max_seconds, status, message",
    [
        pytest.param([[0.1, 0.2], [0.3]], SR, None, 400, RAGGED, id="ragged-frames"),
        pytest.param(["loud"], SR, None, 400, RAGGED, id="words"),
        pytest.param([[[0.1]]], SR, None, 400, "got 3 dimensions", id="3-d"),
        pytest.param(0.1, SR, None, 400, "got 0 dimensions", id="a-number"),
        pytest.param([], SR, None, 400, "samples: audio has no samples", id="empty"),
        pytest.param(np.zeros((0, 2)), SR, None, 400, "samples: audio has no samples", id="no-frames"),
        pytest.param(np.zeros((5, 0)), SR, None, 400, "samples: audio has no samples", id="no-channels"),
        pytest.param([0.1, "NaN"], SR, None, 400, "samples: audio contains NaN or infinite", id="nan-text"),
        pytest.param([0.1, INF], SR, None, 400, "samples: audio contains NaN or infinite", id="infinity"),
        pytest.param(
            [[0.1] * 65] * 4, SR, None, 422, "samples: 65 channels, the limit is 64", id="65-channels"
        ),
        pytest.param([0.1] * 100, 5, None, 422, "sampling rate 5 Hz is outside 1000-384000 Hz", id="5-Hz"),
        pytest.param([0.1] * 100, 999, None, 422, "sampling rate 999 Hz is outside", id="999-Hz"),
        pytest.param([0.1] * 100, 384_001, None, 422, "sampling rate 384001 Hz is outside", id="384001-Hz"),
        pytest.param(["loud"], 5, None, 422, "sampling rate 5 Hz", id="rate-checked-first"),
        pytest.param(
            [0.1] * 32_000, 1_000, 20, 422, "audio is 32.0 s long, the limit is 20 s", id="too-long"
        ),
    ],
)
def test_bad_samples_are_refused(samples, sr, max_seconds, status, message):
    with pytest.raises(InputError) as err:
        load_samples(samples, sr, max_seconds=max_seconds)
    assert message in str(err.value)
    assert status_of(err.value) == status


@pytest.mark.parametrize(
    "sr, channels, message",
    [
        (1_000, 1, None),
        (384_000, 64, None),
        (999, 1, "x: sampling rate 999 Hz is outside 1000-384000 Hz"),
        (384_001, 1, "x: sampling rate 384001 Hz is outside 1000-384000 Hz"),
        (SR, 65, "x: 65 channels, the limit is 64 (frames of channels are expected"),
    ],
)
def test_check_format_limits(sr, channels, message):
    if message is None:
        assert check_format("x", sr, channels) is None
        return
    with pytest.raises(InputError) as err:
        check_format("x", sr, channels)
    assert str(err.value).startswith(message) and status_of(err.value) == 422


@pytest.mark.parametrize(
    "rate, ratio",
    [(16_000, (1, 1)), (8_000, (1, 2)), (48_000, (3, 1)), (44_100, (441, 160)), (22_050, (441, 320))],
)
def test_common_rates_resample_by_their_exact_ratio(rate, ratio):
    assert resampling_ratio(rate, SR) == ratio


@pytest.mark.parametrize("rate", [44_101, 383_999, 1_001])
def test_odd_rates_resample_by_a_near_ratio_with_a_small_kernel(rate):
    orig, new = resampling_ratio(rate, SR)
    assert resampling_kernel_size(orig, new) <= MAX_RESAMPLING_KERNEL
    assert resampling_kernel_size(rate, SR) > MAX_RESAMPLING_KERNEL  # the exact one would not be
    assert orig / new == pytest.approx(rate / SR, rel=1e-4)


def test_resampling_at_the_target_rate_is_a_no_op():
    wave = tone(0.5)
    assert resample(wave, SR) is wave


@pytest.mark.parametrize("rate, length", [(8_000, 16_000), (32_000, 4_000), (48_000, 2_667), (44_101, 2_903)])
def test_resample_lengths(rate, length):
    assert (
        len(resample(tone(0.5), rate)) == length
    )  # 8000 samples taken as `rate` Hz: ceil(8000 * 16000 / rate)


def test_to_mono_averages_frames_into_contiguous_float32():
    frames = np.array([[1.0, 3.0], [2.0, 4.0], [-1.0, 1.0]])
    mono = to_mono(frames)
    assert mono.dtype == np.float32 and mono.flags["C_CONTIGUOUS"]
    assert mono.tolist() == [2.0, 3.0, 0.0]
    strided = to_mono(np.arange(10.0)[::2])
    assert strided.flags["C_CONTIGUOUS"] and strided.tolist() == [0.0, 2.0, 4.0, 6.0, 8.0]


def test_to_mono_averages_integer_frames():
    assert to_mono(np.array([[1000, 3000], [2000, 4000]], dtype=np.int16)).tolist() == [2000.0, 3000.0]


def test_trim_silence_drops_silent_frames_at_both_ends():
    speech = tone(1.0)
    padded = np.concatenate([np.zeros(8_000, np.float32), speech, np.zeros(4_000, np.float32)])
    assert np.array_equal(trim_silence(padded, SR), speech)


@pytest.mark.parametrize("top_db, length", [(40.0, 24_000), (20.0, 16_000)])
def test_trim_silence_keeps_what_is_within_top_db_of_the_loudest_frame(top_db, length):
    quiet = tone(0.5, seed=1) * 10 ** (-30 / 20)  # 30 dB below the tone
    wave = np.concatenate([quiet, tone(1.0)])
    assert len(trim_silence(wave, SR, top_db=top_db)) == length


def test_trim_silence_leaves_a_clip_shorter_than_a_frame_alone():
    wave = tone(0.005)  # 80 samples, half a 10 ms frame
    assert np.array_equal(trim_silence(wave, SR), wave)


def test_save_wav_writes_16_bit_pcm_that_loads_back(tmp_path):
    wave = tone(0.5)
    save_wav(tmp_path / "out.wav", wave, SR)
    info = sf.info(str(tmp_path / "out.wav"))
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (SR, 1, 8_000, "PCM_16")
    assert np.allclose(load_audio(tmp_path / "out.wav"), wave, atol=1 / 32_000)


# ---------------------------------------------------------------------------------------------------
# pipeline.data.wav_header
# ---------------------------------------------------------------------------------------------------

UNKNOWN = 0xFFFFFFFF
TEN_HOURS = 10 * 3600 * SR * 2
FLAC = io.BytesIO()
sf.write(FLAC, tone(0.2), SR, format="FLAC")
CHUNKS_1000 = riff(*[chunk(b"junk", b"")] * 1000)
CHUNKS_1001 = riff(*[chunk(b"junk", b"")] * 1001)


def good(id: str, content: bytes, max_seconds: float | None = None) -> pytest.param:
    return pytest.param(content, max_seconds, id=id)


GOOD_HEADERS = [
    good("soundfile-wav", wav_bytes()),
    good("hand-built-wav", GOOD),
    good("list-chunk-with-pad-byte", riff(fmt(), chunk(b"LIST", b"INFOabc"), chunk(b"data", PCM))),
    good("odd-data-with-pad-byte", riff(fmt(), chunk(b"data", PCM + b"\x01"))),
    good(
        "odd-last-chunk-missing-its-pad-byte",
        riff(fmt(), chunk(b"data", PCM + b"\x01", pad=False), riff_size=4 + 24 + 8 + len(PCM) + 2),
    ),
    good("streamed-sizes-unknown", riff(fmt(), chunk(b"data", PCM, size=UNKNOWN), riff_size=UNKNOWN), 0.5),
    good("riff-size-unknown", riff(fmt(), chunk(b"data", PCM), riff_size=UNKNOWN)),
    good("exactly-at-the-limit", GOOD, 1.0),
    good("stereo-48k-24-bit-at-the-limit", riff(fmt(48_000, 2, 24), chunk(b"data", bytes(48_000 * 6))), 1.0),
    good("a-thousand-chunks", CHUNKS_1000),
    good("text", b"these are meeting notes\n" * 20),
    good("empty", b""),
    good("shorter-than-a-riff-header", GOOD[:11]),
    good("flac", FLAC.getvalue()),
    good("riff-but-not-wave", riff(b"LIST", form=b"AVI ", riff_size=5)),
    good("big-endian-rifx", b"RIFX" + GOOD[4:30]),
]


@pytest.mark.parametrize("content, max_seconds", GOOD_HEADERS)
def test_wav_headers_that_match_their_file_and_other_formats_pass(tmp_path, content, max_seconds):
    path = tmp_path / "clip.wav"
    path.write_bytes(content)
    assert check_wav(path, max_seconds) is None


def bad_header(id: str, content: bytes, status: int, message: str, max_seconds: float | None = None):
    return pytest.param(content, max_seconds, status, message, id=id)


BAD_HEADERS = [
    bad_header(
        "cut-after-fmt", GOOD[:40], 400, "truncated or corrupt WAV file: its last 4 bytes are not a chunk"
    ),
    bad_header(
        "header-only", GOOD[:44], 400, "truncated WAV file: its 'data' chunk announces 32000 bytes, 0 follow"
    ),
    bad_header(
        "cut-in-the-data",
        GOOD[:1000],
        400,
        "truncated WAV file: its 'data' chunk announces 32000 bytes, 956 follow",
    ),
    bad_header(
        "cut-in-the-fmt-body",
        GOOD[:35],
        400,
        "truncated WAV file: its 'fmt ' chunk announces 16 bytes, 15 follow",
    ),
    bad_header(
        "data-claims-twice-its-size",
        riff(fmt(), chunk(b"data", PCM, size=2 * len(PCM))),
        400,
        "truncated WAV file: its 'data' chunk announces 64000 bytes, 32000 follow",
    ),
    bad_header(
        "data-claims-half-its-size",
        riff(fmt(), chunk(b"data", PCM, size=len(PCM) // 2)),
        400,
        "corrupt WAV file: the bytes at offset 16044 are not a chunk (does a chunk announce fewer bytes",
    ),
    bad_header(
        "3-stray-bytes",
        GOOD + b"\0\0\0",
        400,
        "truncated or corrupt WAV file: its last 3 bytes are not a chunk",
    ),
    bad_header(
        "stray-text-after-data",
        GOOD + b"junk" * 4,
        400,
        "truncated WAV file: its 'junk' chunk announces 1802401130 bytes, 8 follow",
    ),
    bad_header(
        "binary-chunk-id",
        riff(fmt(), chunk(b"\x00\x01\x02\x03", b"x" * 4), chunk(b"data", PCM)),
        400,
        "corrupt WAV file: the bytes at offset 36 are not a chunk",
    ),
    bad_header(
        "riff-size-too-big",
        riff(fmt(), chunk(b"data", PCM), riff_size=len(GOOD) + 992),
        400,
        "corrupt WAV file: its header announces 33044 bytes, it has 32044",
    ),
    bad_header(
        "riff-size-too-small",
        riff(fmt(), chunk(b"data", PCM), riff_size=16_000),
        400,
        "corrupt WAV file: its header announces 16008 bytes, it has 32044",
    ),
    bad_header(
        "riff-size-leaves-out-the-pad-byte",
        riff(fmt(), chunk(b"data", b"\x01"), riff_size=4 + 24 + 9),
        400,
        "corrupt WAV file: its header announces 45 bytes, it has 46",
    ),
    bad_header("1001-chunks", CHUNKS_1001, 400, "corrupt WAV file: more than 1000 chunks"),
    bad_header(
        "header-claims-ten-hours",
        riff(fmt(), chunk(b"data", PCM, size=TEN_HOURS), riff_size=36 + TEN_HOURS),
        422,
        "audio is 36000.0 s long, the limit is 20 s",
        20,
    ),
    bad_header(
        "ten-hours-without-a-limit-is-truncated",
        riff(fmt(), chunk(b"data", PCM, size=TEN_HOURS), riff_size=36 + TEN_HOURS),
        400,
        f"truncated WAV file: its 'data' chunk announces {TEN_HOURS} bytes, 32000 follow",
    ),
    bad_header("a-second-over-half-a-second", GOOD, 422, "audio is 1.0 s long, the limit is 0.5 s", 0.5),
    bad_header(
        "stereo-48k-24-bit-duration",
        riff(fmt(48_000, 2, 24), chunk(b"data", bytes(3 * 48_000 * 6))),
        422,
        "audio is 3.0 s long, the limit is 2.5 s",
        2.5,
    ),
    bad_header(
        "500-Hz",
        riff(fmt(rate=500), chunk(b"data", PCM)),
        422,
        "sampling rate 500 Hz is outside 1000-384000 Hz",
    ),
    bad_header(
        "4-GHz",
        riff(fmt(rate=4_000_000_000), chunk(b"data", PCM)),
        422,
        "sampling rate 4000000000 Hz is outside",
    ),
    bad_header(
        "4096-channels",
        riff(fmt(channels=4096), chunk(b"data", bytes(4096 * 2 * 16))),
        422,
        "4096 channels, the limit is 64",
    ),
]


@pytest.mark.parametrize("content, max_seconds, status, message", BAD_HEADERS)
def test_wav_headers_that_lie_are_refused(tmp_path, content, max_seconds, status, message):
    path = tmp_path / "clip.wav"
    path.write_bytes(content)
    with pytest.raises(InputError) as err:
        check_wav(path, max_seconds, name="clip.wav")
    assert str(err.value).startswith(f"clip.wav: {message}"), str(err.value)
    assert status_of(err.value) == status


def test_wav_header_messages_name_the_upload_by_default(tmp_path):
    (tmp_path / "x.wav").write_bytes(GOOD[:44])
    with pytest.raises(InputError, match=r"^upload: truncated WAV file: "):
        check_wav(tmp_path / "x.wav")


@pytest.mark.parametrize("cut", [20, 28, 33])
def test_a_wav_cut_inside_its_fmt_chunk_is_refused_as_truncated(tmp_path, cut):
    (tmp_path / "x.wav").write_bytes(GOOD[:cut])
    with pytest.raises(InputError) as err:
        check_wav(tmp_path / "x.wav")
    assert str(err.value).startswith(
        f"upload: truncated WAV file: its 'fmt ' chunk announces 16 bytes, {cut - 20} follow"
    )
    assert status_of(err.value) == 400


# ---------------------------------------------------------------------------------------------------
# Messages about a limit must not contradict it
# ---------------------------------------------------------------------------------------------------


def _duration_limit_error(where: str, tmp_path) -> AudioError:
    """The error for a clip a little outside the limit: 1599 samples (minimum 0.1 s), or 20.04 s
    (limit 20 s)."""
    with pytest.raises(InputError) as err:
        if where == "timeline":
            classify_wave(np.zeros(1_599), SR, LABELS, constant([0.25] * 4))
        elif where == "load_audio":
            load_audio(wav_bytes(20.04), max_seconds=20)
        else:
            (tmp_path / "x.wav").write_bytes(wav_bytes(20.04))
            check_wav(tmp_path / "x.wav", max_seconds=20)
    return err.value


@pytest.mark.parametrize("where", ["timeline", "load_audio", "check_wav"])
def test_a_clip_just_outside_a_duration_limit_is_refused(where, tmp_path):
    err = _duration_limit_error(where, tmp_path)
    assert status_of(err) == 422
    assert re.search(r"audio is [\d.]+ s long, the (minimum|limit) is (0\.1|20) s", str(err)), str(err)


@pytest.mark.parametrize("where", ["timeline", "load_audio", "check_wav"])
def test_the_message_of_a_clip_just_outside_a_limit_does_not_contradict_it(where, tmp_path):
    message = str(_duration_limit_error(where, tmp_path))
    seconds, limit = map(
        float, re.search(r"audio is ([\d.]+) s long, the \w+ is ([\d.]+) s", message).groups()
    )
    assert seconds < limit if where == "timeline" else seconds > limit, message
