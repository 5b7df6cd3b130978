"""The options of the commands that use a trained model or prepared data rather than run a
training: `ser evaluate`, `predict`, `export`, `serve`, `baseline`. Dataclasses, as the run
configuration is: their flags, defaults and help are written once, here (`pipeline.arguments`)."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field

from .arguments import option
from .functionals import FEATURE_SETS

# Inference precision and backend: auto = bf16 for models of 10 M parameters or more where the
# hardware runs it natively (CUDA GPUs; AVX512-BF16/AMX CPUs where a probe at load shows it
# faster), else fp32; int8 = dynamic int8 linear layers (CPU). onnx = ONNX Runtime (CPU; fp32, int8).
PRECISIONS, BACKENDS = ("auto", "fp32", "bf16", "int8"), ("auto", "onnx", "torch")
DEFAULT_MODEL_NAME = "ser-emotion"
INFERENCE_BATCH = 16  # clips per forward pass where a command scores many (evaluate, a recording's spans)
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Runtime:
    """How a checkpoint runs."""

    precision: str = option(
        "auto",
        "auto: bf16 where the hardware runs it natively for models of 10 M parameters or more, else fp32; "
        "int8: dynamic int8 linear layers (CPU)",
        choices=PRECISIONS,
    )
    backend: str = option(
        "auto",
        "onnx: ONNX Runtime, CPU (the serving install); torch: PyTorch (the full install: GPUs, bf16); "
        "auto: onnx on the CPU where the checkpoint has ONNX models (`ser export`) or torch is absent",
        choices=BACKENDS,
    )
    device: str = option(
        "auto", "cpu, cuda or cuda:N (torch backend); auto: cuda where torch sees a GPU, else cpu"
    )


CHECKPOINT_HELP = "a checkpoint directory (a training run's best/)"
DATA_HELP = "prepared data directory (`ser prepare --output-dir`)"
JSON_HELP = "print the result as one JSON line"


@dataclass(frozen=True)
class EvaluateArgs:
    checkpoint: str = option(MISSING, CHECKPOINT_HELP)
    data: str = option(MISSING, DATA_HELP)
    split: str = option("test", "the split to score", choices=SPLITS)
    fold: int | None = option(
        None, "fold of the prepared splits; none: the fold the checkpoint was trained on"
    )
    batch_size: int = option(INFERENCE_BATCH, "clips per forward pass")
    runtime: Runtime = field(default_factory=Runtime)
    json: bool = option(False, JSON_HELP)


@dataclass(frozen=True)
class ArchiveArgs:
    """Scoring a whole archive (`pipeline.inference.archive_job`)."""

    output_dir: str | None = option(
        None,
        "score a folder or a manifest (.csv/.jsonl with a path column) into a table of shards here; "
        "killed and run again, it goes on where it stopped; none: print one JSON line per file",
    )
    format: str = option("parquet", "the shards' format", choices=("parquet", "jsonl"))
    workers: int | None = option(
        None, "processes (or Ray actors), each holding the model; none: one per GPU on cuda, else 1"
    )
    engine: str = option(
        "local", "local: worker processes on this machine; ray: Ray Data actors", choices=("local", "ray")
    )
    ray_address: str | None = option(
        None, "the Ray cluster to run on (`ray start --head` prints it); none: RAY_ADDRESS, else a local one"
    )
    shard_files: int = option(1000, "files per shard (a shard is also written every minute)")


@dataclass(frozen=True)
class PredictArgs:
    checkpoint: str = option(MISSING, CHECKPOINT_HELP)
    output: str | None = option(
        None, "write the timeline (one line per segment) to this .jsonl or .csv file; none: in the answers"
    )
    runtime: Runtime = field(default_factory=Runtime)
    archive: ArchiveArgs = field(default_factory=ArchiveArgs)


@dataclass(frozen=True)
class BaselineArgs:
    data: str = option(MISSING, DATA_HELP)
    features: str = option(
        "compare",
        "compare: openSMILE ComParE_2016 (6,373); egemaps: eGeMAPSv02 (88); mfcc: MFCC statistics (120)",
        choices=tuple(FEATURE_SETS),
    )
    fold: int | None = option(None, "fold of the prepared splits; none: every fold, with mean ± std")
    num_proc: int = option(1, "processes computing the functionals (cached)")
    json: bool = option(False, JSON_HELP)


@dataclass(frozen=True)
class ExportArgs:
    checkpoint: str = option(MISSING, CHECKPOINT_HELP)
    name: str = option(DEFAULT_MODEL_NAME, "the model's name in the BentoML model store")
    onnx: bool = option(True, "with the ONNX models (fp32, int8) the serving install runs")


@dataclass(frozen=True)
class ServeArgs:
    model: str = option(
        f"{DEFAULT_MODEL_NAME}:latest",
        "a BentoML model store tag (`ser export`), or a checkpoint directory (exported first)",
    )
    host: str = option("0.0.0.0", "the address to listen on")
    port: int = option(3000, "the port to listen on")


@dataclass(frozen=True)
class TrainArgs:
    """`ser train`'s options besides the run configuration (`--seeds` and `--jobs`: in `pipeline.cli`)."""

    resume: bool = option(False, "continue from the newest full checkpoint")
    overfit_batches: int = option(0, "only check that this many batches can be overfitted; 0: train")


# What each subcommand's --help shows as its example.
EXAMPLES = {
    "synth": "ser synth --output-dir runs/demo/corpus --speakers 20",
    "prepare": "ser prepare --data-dir ~/corpora/emodb --output-dir runs/emodb/data --split-by speaker\n"
    "  ser prepare --data-dir my_clips/ --output-dir runs/mine/data   (one folder per label)",
    "train": "ser train --data runs/emodb/data --output-dir runs/emodb/model --epochs 20\n"
    "  ser train --config configs/default.yaml --data runs/emodb/data --output-dir runs/x train.seed=3",
    "probe": "ser probe --data runs/emodb/data --output-dir runs/probe --backbone facebook/wav2vec2-base",
    "tune": "ser tune --data runs/emodb/data --output-dir runs/tune --trials 20",
    "lr-find": "ser lr-find --data runs/emodb/data --output-dir runs/lr",
    "baseline": "ser baseline --data runs/emodb/data --features egemaps",
    "evaluate": "ser evaluate --checkpoint runs/emodb/model/best --data runs/emodb/data --json",
    "predict": "ser predict --checkpoint runs/demo/model/best clip.wav\n"
    "  ser predict --checkpoint runs/demo/model/best --segments vad --output timeline.csv interview.wav\n"
    "  ser predict --checkpoint runs/demo/model/best --output-dir scores/ --workers 2 calls/",
    "export": "ser export --checkpoint runs/demo/model/best --name ser-emotion",
    "serve": "ser serve --model ser-emotion:latest --port 3000\n  ser serve --model runs/demo/model/best",
}
