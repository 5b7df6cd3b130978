"""The whole journey on the embedded default, through the real CLI and a real server:
synth -> prepare -> train -> evaluate -> predict -> export -> serve -> POST."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import httpx
import numpy as np
import pytest
import soundfile as sf
from conftest import REPO_ROOT, ser
from servers import export_to_store, running_service

from pipeline.calibration import softmax
from pipeline.inference.predictor import Predictor

CONTRACT = {"label", "score", "scores", "duration_s", "model"}


def test_prepare_writes_a_speaker_independent_summary(prepared):
    summary = json.loads((prepared / "summary.json").read_text())
    assert summary["corpora"] == ["folder"] and summary["split_scheme"] == "speaker"
    assert summary["folds"] == 1 and (prepared / "summary.png").stat().st_size > 0
    assert summary["labels"] == ["angry", "happy", "neutral", "sad"]
    speakers = [set(s["speaker_ids"]) for s in summary["splits"].values()]
    assert sum(map(len, speakers)) == 5 and len(set.union(*speakers)) == 5
    assert sum(s["clips"] for s in summary["splits"].values()) == 5 * 4 * 4
    assert all(s["hours"] > 0 for s in summary["splits"].values())
    assert summary["skipped"] == []


def test_train_writes_a_loadable_checkpoint_and_metrics(trained):
    best = trained / "best"
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        assert (best / name).is_file()
    config = json.loads((best / "config.json").read_text())
    assert sorted(config["id2label"].values()) == ["angry", "happy", "neutral", "sad"]
    metrics = json.loads((trained / "metrics.json").read_text())
    assert {"accuracy", "uar", "macro_f1", "confusion_matrix"} <= set(metrics["test"])
    assert len(metrics["history"]) == 2
    assert (trained / "confusion_matrix.png").stat().st_size > 0


def test_evaluate_json_matches_the_training_report(trained, prepared):
    out = ser("evaluate", "--checkpoint", str(trained / "best"), "--data", str(prepared), "--json")
    metrics = json.loads(out.stdout)
    assert {"accuracy", "uar", "macro_f1", "labels", "confusion_matrix"} <= set(metrics)
    reported = json.loads((trained / "metrics.json").read_text())["test"]
    assert metrics["confusion_matrix"] == reported["confusion_matrix"]
    assert np.sum(metrics["confusion_matrix"]) == reported["samples"]


def test_pipeline_predict_rest_and_demo_agree(trained, corpus, tmp_path):
    """The stock transformers pipeline gives the network's own scores (`ser predict` fuses them with
    the functionals head); the REST API and the demo (at the default precision, bf16 where the CPU
    has it) give `ser predict --precision fp32`'s top label."""
    from gradio_client import Client, handle_file
    from transformers import pipeline

    clips = sorted(corpus.glob("*/*.wav"))[::9][:4]
    lines = ser("predict", "--checkpoint", str(trained / "best"), "--precision", "fp32", *map(str, clips))
    lines = lines.stdout.splitlines()
    cli = [json.loads(line) for line in lines]
    assert [c["file"] for c in cli] == [str(c) for c in clips]
    assert all(abs(sum(c["scores"].values()) - 1) < 1e-5 for c in cli)

    classifier = pipeline("audio-classification", model=str(trained / "best"), device="cpu")
    ours = Predictor.from_pretrained(trained / "best", precision="fp32")
    assert ours.head is not None  # the default recipe fuses
    tag = export_to_store(trained / "best", tmp_path / "bentoml")
    with running_service(tag, tmp_path / "bentoml") as url:
        demo = Client(f"{url}/ui/", verbose=False, download_files=str(tmp_path))
        for clip, line in zip(clips, cli):
            wave, sr = sf.read(clip, dtype="float32")
            stock = classifier({"raw": wave, "sampling_rate": sr}, top_k=None)
            network = dict(zip(ours.labels, softmax(ours.network_logits([wave]))[0].tolist()))
            for item in stock:
                assert abs(item["score"] - network[item["label"]]) < 1e-4
            response = httpx.post(
                f"{url}/classify", files={"audio": (clip.name, clip.read_bytes(), "audio/wav")}, timeout=60
            )
            assert response.status_code == 200, response.text
            body = response.json()
            assert set(body) == CONTRACT and body["model"] == tag
            assert body["label"] == line["label"]
            assert body["scores"] == pytest.approx(line["scores"], abs=0.02)
            assert abs(body["duration_s"] - len(wave) / sr) < 1e-3
            shown = demo.predict(handle_file(str(clip)), api_name="/classify")[0]
            assert shown["label"] == line["label"]
        info = httpx.post(f"{url}/info", timeout=30).json()
        assert info["functionals"] == {"feature_set": "compare", "weight": ours.head.weight}
        bad = httpx.post(f"{url}/classify", files={"audio": ("x.wav", b"not audio", "audio/wav")}, timeout=60)
        assert 400 <= bad.status_code < 500 and "error" in bad.json()
        assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200


def test_finetune_script_trains_through_accelerate_launch(prepared, tmp_path):
    """The README's fine-tuning entry point: `accelerate launch` around `ser train`."""
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(
        [
            "bash",
            str(REPO_ROOT / "scripts" / "finetune.sh"),
            "--config",
            "configs/default.yaml",
            "--data",
            str(prepared),
            "--output-dir",
            str(tmp_path / "run"),
            "train.epochs=1",
            "train.batch_size=8",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "test: accuracy" in done.stdout
    assert re.search(
        r"baseline UAR \d\.\d{3} \(compare\) · \d\.\d{3} \(mfcc\) · this model \d\.\d{3}", done.stdout
    )
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()
