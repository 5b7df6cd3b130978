"""The model card (`best/README.md`): what the checkpoint is, how it was trained, what it scored."""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..config import KEPT, Config
from ..functionals import FEATURE_SETS
from .protocol import protocol, protocol_lines

_TEMPLATE = """---
{{ card_data }}
---

# {{ name }}

Speech emotion recognition: an audio classifier ({{ architecture }}, {{ params }} parameters) fine-tuned
with ser-toolkit from {{ backbone }}.

**Labels:** {{ labels }}

## Data

{{ data }}

## Results

Held-out test split ({{ test_samples }} clips{{ test_note }}), {{ kept }} (step {{ best_step }}):

| metric | this model | {{ baseline_names }} |
|---|---|{{ baseline_rule }}
| accuracy | {{ accuracy }} | {{ baseline.accuracy }} |
| UAR (unweighted average recall) | {{ uar }} | {{ baseline.uar }} |
| macro-F1 | {{ macro_f1 }} | {{ baseline.macro_f1 }} |

The classical baselines are `ser baseline`: utterance functionals and a linear SVM, fitted on the
same training (and validation) speakers and scored on the same test clips.

| class | precision | recall | F1 | clips |
|---|---|---|---|---|
{{ per_class }}

{{ answer }}

{{ calibration }}

## Protocol

{{ protocol }}

## Training

{{ trainer }}; hyperparameters:

```json
{{ hyperparameters }}
```

## Use

```python
from transformers import pipeline
classifier = pipeline("audio-classification", model="path/to/best")
classifier({"raw": waveform, "sampling_rate": {{ sampling_rate }}})
```

## Limitations

Scores hold for the speakers, recording conditions and label set of the data above; acted emotion
corpora differ from spontaneous speech, and a model trained on the synthetic demo corpus is a
pipeline check, not an emotion recogniser.
"""


GENERIC_READERS = ("folder", "csv", "auto")  # layouts, not corpora: the directory names the data


def dataset_name(summary: dict) -> str:
    """The corpora a prepared dataset holds: the known corpora by name (emodb, ravdess, ...), a
    folder or manifest by its directory's name, the demo corpus as `synthetic-demo`."""
    if summary.get("synthetic"):
        return "synthetic-demo"
    readers = (
        summary["corpora"] * len(summary["data_dirs"]) if len(summary["corpora"]) == 1 else summary["corpora"]
    )
    names = [Path(d).name if r in GENERIC_READERS else r for r, d in zip(readers, summary["data_dirs"])]
    return "+".join(dict.fromkeys(names))


def model_name(cfg: Config, dataset: str) -> str:
    """`ser-<corpora>-<backbone>`: the pretrained backbone's name, or the small model's architecture."""
    backbone = Path(cfg.model.backbone).name if cfg.model.backbone else f"small-{cfg.model.architecture}"
    return f"ser-{dataset}-{backbone}".lower()


def _data_description(data_dir: Path) -> tuple[str, str]:
    """(markdown paragraph, dataset name) from the prepared data's summary.json, where present."""
    path = data_dir / "summary.json"
    if not path.is_file():
        return f"Prepared data in `{data_dir}`.", data_dir.name
    summary = json.loads(path.read_text())
    rows = "\n".join(
        f"| {name} | {s['clips']} | {len(s.get('speaker_ids', []))} | {s['hours']:.3f} |"
        for name, s in summary["splits"].items()
    )
    corpora = ", ".join(summary["corpora"])
    text = (
        f"Corpora: {corpora}; split by {summary['split_scheme']} ({summary['split_note']}).\n\n"
        f"| split | clips | speakers | hours |\n|---|---|---|---|\n{rows}"
    )
    return text, dataset_name(summary)


def _answer_description(cfg: Config, weight: float | None) -> str:
    if not cfg.model.functionals:
        return "The answer is the network's alone."
    how = "fixed" if cfg.model.functionals_weight is not None else "fitted on the validation speakers"
    return (
        f"The answer fuses the network with a functionals head (`functionals.safetensors`: a logistic "
        f"regression on {FEATURE_SETS[cfg.model.functionals]} of the clip, fitted on the training and "
        f"validation speakers): weight {weight:g} on the network's log-probabilities ({how}), "
        f"{1 - weight:g} on the head's. `ser predict`, the REST API and the demo apply it; the stock "
        "`transformers` pipeline runs the network alone."
    )


def _calibration_description(calibration: dict | None) -> str:
    if not calibration or "test" not in calibration:
        return ""
    test = calibration["test"]
    applied = "applied: `calibration_temperature` in config.json" if calibration["applied"] else "not applied"
    return (
        f"Calibration: test expected calibration error {test['ece_before']:.3f}; "
        f"{test['ece_after']:.3f} with the temperature fitted on the validation speakers "
        f"({calibration['temperature']:.3f}, "
        f"{applied}; "
        "reliability.png)."
    )


def write_model_card(best: Path, cfg: Config, results: dict, trainer: str) -> None:
    """Writes `best/README.md` with Hub metadata (model-index) and the test results."""
    from ..files import write_file_atomic

    config = json.loads((best / "config.json").read_text())
    test, baselines = results["test"], results["baselines"]
    data, corpora_name = _data_description(Path(cfg.data.path))
    name = model_name(cfg, corpora_name)
    card_data = ModelCardData(
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag="audio-classification",
        tags=["speech-emotion-recognition", "audio-classification", "ser-toolkit"],
        model_name=name,
        eval_results=[
            EvalResult(
                task_type="audio-classification",
                dataset_type=corpora_name,
                dataset_name=corpora_name,
                dataset_split="test",
                metric_type=key,
                metric_name=name,
                metric_value=round(test[key], 4),
            )
            for key, name in (("accuracy", "accuracy"), ("uar", "UAR"), ("macro_f1", "macro-F1"))
        ],
    )
    per_class = "\n".join(
        f"| {label} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | {s['support']} |"
        for label, s in test["per_class"].items()
    )
    small = f"a randomly initialised small {cfg.model.architecture}"
    backbone = f"`{cfg.model.backbone}`" if cfg.model.backbone else small
    card = ModelCard.from_template(
        card_data,
        template_str=_TEMPLATE,
        name=name,
        architecture=config["architectures"][0],
        params=f"{results['parameters']:,}",
        backbone=backbone,
        labels=", ".join(test["labels"]),
        data=data,
        test_samples=test["samples"],
        test_note=f", fold {results['fold']}" if results.get("fold") else "",
        kept=KEPT[results["kept"]],
        best_step=results["best_step"],
        accuracy=f"{test['accuracy']:.3f}",
        uar=f"{test['uar']:.3f}",
        macro_f1=f"{test['macro_f1']:.3f}",
        baseline_names=" | ".join(f"{name} + linear SVM" for name in baselines),
        baseline_rule="---|" * len(baselines),
        baseline={
            key: " | ".join(f"{run['test'][key]:.3f}" for run in baselines.values())
            for key in ("accuracy", "uar", "macro_f1")
        },
        answer=_answer_description(cfg, results.get("functionals_weight")),
        calibration=_calibration_description(results.get("calibration")),
        protocol="\n".join(protocol_lines(protocol(cfg.data.path, [results.get("fold") or 0]), baselines)),
        per_class=per_class,
        trainer=trainer,
        hyperparameters=json.dumps(cfg.to_dict()["train"], indent=2),
        sampling_rate=json.loads((best / "preprocessor_config.json").read_text())["sampling_rate"],
    )
    write_file_atomic(best / "README.md", str(card))
