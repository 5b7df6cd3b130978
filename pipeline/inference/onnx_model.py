"""The ONNX Runtime backend: a checkpoint's classifier exported to ONNX (fp32, and int8 with dynamic
quantization of the matrix products, by `ser export`: `pipeline.inference.onnx_export`), run by an
`onnxruntime` session on the CPU. No torch: this is what the serving install runs."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import SerError, first_line

ONNX_DIR = "onnx"  # inside a checkpoint directory or a stored model
ONNX_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
ONNX_TYPES = {"tensor(float)": np.float32, "tensor(int32)": np.int32, "tensor(int64)": np.int64}
FINGERPRINT = "weights.sha256"  # in onnx/: the digest of the weights the models were exported from


def weights_digest(checkpoint: str | Path) -> str:
    """The SHA-256 of a checkpoint's model.safetensors, read once per version of the file (loading a
    model asks twice: which backend, which file; a base-sized model's weights are 360 MB)."""
    path = (Path(checkpoint) / "model.safetensors").resolve()
    stat = path.stat()
    return _file_digest(path, stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=8)
def _file_digest(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as weights:
        while block := weights.read(2**20):
            digest.update(block)
    return digest.hexdigest()


def has_onnx(checkpoint: str | Path) -> bool:
    """Whether `checkpoint` holds ONNX models exported from its current weights (`ser export`): a
    model trained again into the same directory does not run its predecessor's."""
    onnx = Path(checkpoint) / ONNX_DIR
    try:
        return all((onnx / name).is_file() for name in ONNX_FILES.values()) and (
            (onnx / FINGERPRINT).read_text().strip() == weights_digest(checkpoint)
        )
    except OSError:
        return False


class OnnxClassifier:
    """`classifier(inputs)` → logits (numpy), for the front end's inputs (numpy or torch).

    ONNX Runtime keeps the memory of its largest run in an arena: the default model's 60-s clip
    takes 3.5 GB there, a 3-s one 20 MB. So a call holds at most `batch_seconds` of (padded) audio
    (`Predictor` splits longer batches), and the arena is given back after a longer one (a single
    long clip: it then takes about twice as long, faulting its memory in again)."""

    backend, device = "onnx", "cpu"
    batch_seconds = 10.0

    def __init__(self, path: Path, precision: str, threads: int | None = None):
        import onnxruntime

        self.precision = precision
        options = onnxruntime.SessionOptions()  # threads: `threads`, else one per physical core
        options.intra_op_num_threads = threads or 0
        options.log_severity_level = 3  # errors only
        # idle threads sleep: spinning ones slowed the request threads' numpy (features) by 3x
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own untyped errors for bad files
            raise SerError(f"cannot load the ONNX model {path}: {first_line(err)}") from err
        self.input_types = {i.name: ONNX_TYPES[i.type] for i in self.session.get_inputs()}
        self.release = onnxruntime.RunOptions()
        self.release.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def __call__(self, inputs: dict, seconds: float = 0.0) -> np.ndarray:
        """Logits of a batch of `seconds` of padded audio."""
        feed = {name: np.asarray(inputs[name], dtype=dtype) for name, dtype in self.input_types.items()}
        return self.session.run(["logits"], feed, self.release if seconds > self.batch_seconds else None)[0]
