"""User errors end as one readable line and a non-zero exit."""

from __future__ import annotations

import json

import pytest
import soundfile as sf
from conftest import ser

from pipeline.data.synth import write_examples


@pytest.mark.parametrize(
    "args, message",
    [
        (["predict", "--checkpoint", "{tmp}", "{tmp}/missing.wav"], "file not found"),
        (
            ["prepare", "--corpus", "nosuch", "--data-dir", "{tmp}", "--output-dir", "{tmp}/o"],
            "invalid choice",
        ),
        (["prepare", "--data-dir", "{tmp}/missing", "--output-dir", "{tmp}/o"], "data directory not found"),
        (["train", "--data", "{tmp}", "train.epochz=1"], "unknown config key 'train.epochz'"),
        (["train", "--config", "{tmp}/none.yaml"], "config file not found"),
        (["train", "--data", "{tmp}"], "no prepared data"),
        (["train", "--data", "{tmp}", "--jobs", "0"], "expected a whole number of at least 1, got '0'"),
        (["evaluate", "--checkpoint", "{tmp}", "--data", "{tmp}"], "no prepared data"),
        (["export", "--checkpoint", "{tmp}"], "not a checkpoint directory"),
        (
            ["predict", "--checkpoint", "{tmp}", "{tmp}"],
            "(a folder or a manifest is scored with --output-dir)",
        ),
        (["predict", "--checkpoint", "{tmp}", "--output-dir", "{tmp}/o", "{tmp}", "{tmp}"], "one folder or"),
        (
            ["predict", "--checkpoint", "{tmp}", "--output-dir", "{tmp}/o", "--workers", "0", "{tmp}"],
            "at least 1",
        ),
        (
            ["predict", "--checkpoint", "{tmp}", "--output-dir", "{tmp}/o", "--shard-files", "0", "{tmp}"],
            "--shard-files must be at least 1, got 0",
        ),
        (
            ["predict", "--checkpoint", "{tmp}", "--output-dir", "{tmp}/o", "{tmp}/none"],
            "no folder or manifest",
        ),
        (["predict", "--checkpoint", "{tmp}", "--output-dir", "{tmp}/o", "{tmp}"], "no audio files"),
    ],
)
def test_errors_are_one_line(tmp_path, ser_here, args, message):
    done = ser_here(*(a.format(tmp=tmp_path) for a in args), check=False)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert message in lines[0]


def test_the_console_command_exits_2_with_one_line_on_stderr(tmp_path):
    done = ser("train", "--data", str(tmp_path), check=False)
    assert done.returncode == 2 and done.stdout == ""
    hint = f"run `ser prepare --output-dir {tmp_path}` first"
    assert done.stderr == f"ser train: error: no prepared data in {tmp_path}: {hint}\n"


def test_predict_answers_like_the_rest_api_with_options(trained, corpus, ser_here):
    clip = next(corpus.glob("*/*.wav"))
    story = write_examples(corpus.parent / "examples")[-1]
    lines = ser_here(
        "predict",
        "--checkpoint",
        str(trained / "best"),
        "--top-k",
        "2",
        "--window-s",
        "2",
        "--hop-s",
        "1",
        str(clip),
        str(story),
    ).stdout.splitlines()
    short, long = map(json.loads, lines)
    assert len(short["segments"]) == 1 and list(short["scores"]) == list(short["segments"][0]["scores"])
    assert len(long["scores"]) == 2 and long["label"] == next(iter(long["scores"]))
    assert long["duration_s"] == round(sf.info(story).duration, 3)
    assert len(long["segments"]) == int(long["duration_s"] - 2) + 2  # every second, and one ending at the end
    bad = ser_here("predict", "--checkpoint", str(trained / "best"), "--top-k", "9", str(clip), check=False)
    assert bad.returncode == 2 and bad.stderr.strip().endswith("top_k must be between 1 and 4, got 9")


def test_evaluate_and_predict_at_each_precision(trained, prepared, corpus, ser_here):
    args = ["--checkpoint", str(trained / "best")]
    fp32 = json.loads(ser_here("evaluate", *args, "--data", str(prepared), "--json").stdout)
    assert fp32["precision"] == "fp32"
    clip = str(next(corpus.glob("*/*.wav")))
    for precision in ("int8", "bf16"):
        evaluated = ser_here("evaluate", *args, "--data", str(prepared), "--json", "--precision", precision)
        reduced = json.loads(evaluated.stdout)
        assert reduced["precision"] == precision and reduced["samples"] == fp32["samples"]
        assert abs(reduced["accuracy"] - fp32["accuracy"]) <= 0.25
        answer = json.loads(ser_here("predict", *args, "--precision", precision, clip).stdout)
        assert abs(sum(answer["scores"].values()) - 1) < 1e-5


def test_evaluate_and_predict_with_the_onnx_backend(trained, prepared, corpus, ser_here):
    """ONNX Runtime in fp32 gives PyTorch's answers (exported on the fly: the checkpoint has no
    onnx/); int8 stays close; bf16 is refused in one line."""
    args = ["--checkpoint", str(trained / "best")]
    data = ["--data", str(prepared), "--json"]
    torch_fp32 = json.loads(ser_here("evaluate", *args, *data).stdout)
    onnx_fp32 = json.loads(ser_here("evaluate", *args, *data, "--backend", "onnx").stdout)
    assert (onnx_fp32["backend"], onnx_fp32["precision"]) == ("onnx", "fp32")
    assert onnx_fp32["confusion_matrix"] == torch_fp32["confusion_matrix"]
    clip = str(next(corpus.glob("*/*.wav")))
    pytorch = json.loads(ser_here("predict", *args, "--precision", "fp32", clip).stdout)
    ort = json.loads(ser_here("predict", *args, "--backend", "onnx", clip).stdout)
    assert ort["label"] == pytorch["label"]
    assert ort["scores"] == pytest.approx(pytorch["scores"], abs=1e-4)
    int8 = json.loads(ser_here("predict", *args, "--backend", "onnx", "--precision", "int8", clip).stdout)
    assert int8["scores"] == pytest.approx(pytorch["scores"], abs=0.05)
    assert not (trained / "best" / "onnx").exists()
    refused = ser_here("predict", *args, "--backend", "onnx", "--precision", "bf16", clip, check=False)
    assert refused.returncode == 2
    (line,) = refused.stderr.strip().splitlines()
    assert line.endswith("the onnx backend runs fp32 or int8, not bf16; use --backend torch for bf16")
