"""Nothing the toolkit loads can run code: safetensors weights only, `torch.load(weights_only=True)`,
no custom model code unless the user asks for it, and no file-system path taken from a request."""

from __future__ import annotations

import ast
import json
import os
import pickle
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT
from helpers import LABELS, make_tiny_checkpoint, write_tone

from pipeline.config import ModelConfig, TrainConfig, load_config
from pipeline.errors import ConfigError, SerError
from pipeline.model import build_feature_extractor, build_model, load_checkpoint
from pipeline.training.checkpoint import STATE_FILE, load_training_state, rng_state, save_training_state
from pipeline.training.optim import build_optimizer, build_scheduler

SOURCE_DIRS = ("pipeline", "service", "demo", "scripts")


class Trap:
    """Unpickling it creates `path`: proof that a pickle was executed."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _armed(path: Path, marker: Path) -> None:
    """Checks that the trap in `path` is live (loading it without restriction fires it), then re-arms it."""
    try:
        torch.load(path, weights_only=False)
    except Exception:
        pass  # a bare pickle is not torch's format: it fires, then torch.load complains
    assert marker.exists(), "the trap did not fire: this test would prove nothing"
    marker.unlink()


def _pickle_only_checkpoint(directory: Path, marker: Path) -> Path:
    """A checkpoint directory whose only weights are a pickle that creates `marker` when unpickled."""
    make_tiny_checkpoint(directory)
    (directory / "model.safetensors").unlink()
    torch.save({"classifier.weight": Trap(marker)}, directory / "pytorch_model.bin")
    _armed(directory / "pytorch_model.bin", marker)
    return directory


@pytest.mark.fast
def test_pickled_weights_are_refused_without_being_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    checkpoint = _pickle_only_checkpoint(tmp_path / "best", marker)
    with pytest.raises(SerError, match=r"no safetensors weights .*pytorch_model\.bin"):
        load_checkpoint(checkpoint)
    assert not marker.exists()

    # As a backbone to fine-tune: refused too (use_safetensors=True), nothing unpickled.
    with pytest.raises(ConfigError, match="cannot load backbone"):
        build_model(ModelConfig(backbone=str(checkpoint)), LABELS)
    assert not marker.exists()

    # Beside safetensors weights, the pickle is simply never opened.
    both = make_tiny_checkpoint(tmp_path / "both")
    torch.save({"classifier.weight": Trap(marker)}, both / "pytorch_model.bin")
    assert load_checkpoint(both).config.num_labels == len(LABELS)
    assert not marker.exists()


def test_the_cli_refuses_pickled_weights_in_one_line(tmp_path, ser_here):
    marker = tmp_path / "unpickled"
    checkpoint = _pickle_only_checkpoint(tmp_path / "best", marker)
    clip = write_tone(tmp_path / "clip.wav")
    done = ser_here("predict", "--checkpoint", str(checkpoint), str(clip), check=False)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no safetensors weights" in lines[0], done.stderr
    assert not marker.exists()


@pytest.mark.fast
def test_checkpoints_asking_for_custom_code_are_refused(tmp_path):
    checkpoint = make_tiny_checkpoint(tmp_path / "best")
    config = json.loads((checkpoint / "config.json").read_text())
    config["auto_map"] = {"AutoModelForAudioClassification": "evil.Model"}
    (checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(SerError, match="custom code"):
        load_checkpoint(checkpoint)


def _training_state(directory: Path) -> dict:
    """A real full-state checkpoint's parts, as `ser train` saves them."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(architecture="wav2vec2"), LABELS)
    cfg = TrainConfig()
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, total_steps=10)
    model(torch.randn(2, 8000)).logits.sum().backward()
    optimizer.step()
    scheduler.step()
    states = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng_0": rng_state()}
    save_training_state(directory, model_state=model.state_dict(), states=states, trainer_state={"state": {}})
    return states


@pytest.mark.fast
def test_resume_states_are_plain_tensors_and_anything_else_is_refused(tmp_path):
    states = _training_state(tmp_path / "good")
    _, loaded = load_training_state(tmp_path / "good", list(states))  # weights_only=True accepts them
    assert loaded["optimizer"]["param_groups"] == states["optimizer"]["param_groups"]
    assert torch.equal(loaded["rng_0"]["cpu"], states["rng_0"]["cpu"])

    marker = tmp_path / "unpickled"
    bad = tmp_path / "bad"
    _training_state(bad)
    torch.save({"state": {}, "param_groups": [Trap(marker)]}, bad / "optimizer.pt")
    _armed(bad / "optimizer.pt", marker)
    with pytest.raises(SerError, match=r"optimizer\.pt \(only plain tensors are accepted\)"):
        load_training_state(bad, ["optimizer", "scheduler"])
    assert not marker.exists()
    # A bare pickle, not torch's zip format:
    (bad / "optimizer.pt").write_bytes(pickle.dumps({"state": Trap(marker)}, protocol=2))
    _armed(bad / "optimizer.pt", marker)
    with pytest.raises(SerError, match="only plain tensors"):
        load_training_state(bad, ["optimizer"])
    assert not marker.exists()
    (bad / STATE_FILE).unlink()
    with pytest.raises(SerError, match="incomplete checkpoint"):
        load_training_state(bad, ["optimizer"])


# Custom model code: a local "backbone" whose feature extractor is a Python file that, when
# imported, creates a marker file.
CUSTOM_EXTRACTOR = """
import os
from pathlib import Path

Path(os.environ["SER_TEST_MARKER"]).touch()

from transformers import Wav2Vec2FeatureExtractor


class CustomExtractor(Wav2Vec2FeatureExtractor):
    pass
"""


def _custom_code_backbone(directory: Path) -> Path:
    directory.mkdir()
    (directory / "custom_extractor.py").write_text(CUSTOM_EXTRACTOR)
    config = build_feature_extractor(ModelConfig()).to_dict()
    config.update(
        feature_extractor_type="CustomExtractor",
        auto_map={"AutoFeatureExtractor": "custom_extractor.CustomExtractor"},
    )
    (directory / "preprocessor_config.json").write_text(json.dumps(config))
    return directory


def test_trust_remote_code_is_off_unless_the_user_turns_it_on(tmp_path, monkeypatch):
    assert ModelConfig().trust_remote_code is False
    assert load_config(REPO_ROOT / "configs" / "default.yaml", []).model.trust_remote_code is False
    for path in (REPO_ROOT / "configs").glob("*.yaml"):
        assert "trust_remote_code: true" not in path.read_text().lower(), path

    backbone = _custom_code_backbone(tmp_path / "backbone")
    marker = tmp_path / "custom-code-ran"
    monkeypatch.setenv("SER_TEST_MARKER", str(marker))
    with pytest.raises(ConfigError, match=r"custom code, which runs only with model\.trust_remote_code=true"):
        build_feature_extractor(ModelConfig(backbone=str(backbone)))
    assert not marker.exists()

    # The user's own setting is what reaches from_pretrained: with it, the code runs (in a child
    # process, with its own module cache).
    script = (
        "from pipeline.config import load_config\n"
        "from pipeline.model import build_feature_extractor\n"
        f"cfg = load_config(None, ['model.backbone={backbone}', 'model.trust_remote_code=true'])\n"
        "print(type(build_feature_extractor(cfg.model)).__name__)\n"
    )
    env = {**os.environ, "SER_TEST_MARKER": str(marker), "HF_MODULES_CACHE": str(tmp_path / "modules")}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "CustomExtractor" and marker.exists()


# --- Static checks of the source -------------------------------------------------------------------

PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def _dotted(node: ast.AST) -> str:
    """`torch.load` for an Attribute chain, `load` for a Name, '' otherwise."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else node.attr
    return ""


def _is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def unsafe_loading(source: str) -> list[str]:
    """What in `source` could execute pickled or remote code: (line: finding) strings."""
    found = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                if name.split(".")[0] in PICKLE_MODULES:
                    found.append(f"{line}: imports {name}")
            if isinstance(node, ast.ImportFrom) and node.module == "torch":
                if any(a.name == "load" for a in node.names):
                    found.append(f"{line}: from torch import load (check its weights_only)")
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        keywords = {k.arg: k.value for k in node.keywords}
        if name.endswith("torch.load") and not _is_true(keywords.get("weights_only")):
            found.append(f"{line}: {name} without weights_only=True")
        if name.split(".")[0] in PICKLE_MODULES or name.endswith(
            ("pickle.load", "pickle.loads", "Unpickler")
        ):
            found.append(f"{line}: {name}")
        if name.endswith(("np.load", "numpy.load")) and "allow_pickle" in keywords:
            value = keywords["allow_pickle"]
            if not (isinstance(value, ast.Constant) and value.value is False):
                found.append(f"{line}: {name} with allow_pickle")
        if "trust_remote_code" in keywords:
            value = keywords["trust_remote_code"]
            from_config = isinstance(value, ast.Attribute) and value.attr == "trust_remote_code"
            if not (from_config or (isinstance(value, ast.Constant) and value.value is False)):
                found.append(
                    f"{line}: trust_remote_code={ast.unparse(value)} (only the user's config may set it)"
                )
    return found


@pytest.mark.fast
def test_the_scanner_finds_every_unsafe_pattern():
    bad = """
import pickle
from torch import load
import joblib
torch.load(path)
torch.load(path, weights_only=False)
pickle.loads(blob)
np.load(path, allow_pickle=True)
numpy.load(path, allow_pickle=flag)
AutoModel.from_pretrained(name, trust_remote_code=True)
AutoModel.from_pretrained(name, trust_remote_code=os.environ.get("X"))
"""
    assert len(unsafe_loading(bad)) == 10, unsafe_loading(bad)
    good = """
torch.load(path, map_location="cpu", weights_only=True)
np.load(path)
np.load(path, allow_pickle=False)
AutoModel.from_pretrained(name, trust_remote_code=cfg.model.trust_remote_code, use_safetensors=True)
AutoModel.from_pretrained(name, trust_remote_code=False)
"""
    assert unsafe_loading(good) == []


@pytest.mark.fast
def test_no_code_loads_pickles_or_remote_code():
    files = [p for d in SOURCE_DIRS for p in sorted((REPO_ROOT / d).rglob("*.py"))]
    assert len(files) > 20
    findings = [
        f"{path.relative_to(REPO_ROOT)}:{finding}"
        for path in files
        for finding in unsafe_loading(path.read_text())
    ]
    assert findings == []


# --- The service never takes a file-system path from a request --------------------------------------


def _service_modules() -> dict[Path, ast.Module]:
    return {p: ast.parse(p.read_text()) for p in sorted((REPO_ROOT / "service").glob("*.py"))}


def _aliases(modules) -> dict[str, ast.AST]:
    """Module-level `Name = <type expression>` assignments of the service (TopK, Samples, ...)."""
    return {
        target.id: node.value
        for tree in modules.values()
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def _type_names(annotation: ast.AST, aliases: dict[str, ast.AST], seen=()) -> set[str]:
    """Every type name in an annotation, with the service's aliases expanded."""
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):  # "Path | None"
        annotation = ast.parse(annotation.value, mode="eval").body
    names = set()
    for node in ast.walk(annotation):
        name = (
            node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
        )
        if name:
            names.add(name)
            if name in aliases and name not in seen:
                names |= _type_names(aliases[name], aliases, (*seen, name))
    return names


def _made_models(modules: dict[str, ast.Module]) -> dict[str, str]:
    """`name = create_model(..., __base__=Base)` assignments of the service: name -> Base."""
    return {
        target.id: _dotted(keyword.value)
        for tree in modules.values()
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Call)
        and _dotted(node.value.func).endswith("create_model")
        for target in node.targets
        if isinstance(target, ast.Name)
        for keyword in node.value.keywords
        if keyword.arg == "__base__"
    }


def _plain_types(annotation) -> set:
    """The types an annotation admits, outside Literal (whose values are fixed)."""
    if typing.get_origin(annotation) is typing.Literal:
        return set()
    args = typing.get_args(annotation)
    return set().union(*map(_plain_types, args)) if args else {annotation}


def _is_api(function: ast.FunctionDef) -> bool:
    return any(
        _dotted(d.func if isinstance(d, ast.Call) else d).endswith("api") for d in function.decorator_list
    )


@pytest.mark.fast
def test_no_service_api_takes_a_path_string_from_the_request():
    modules = _service_modules()
    aliases = _aliases(modules)
    apis = [
        node
        for tree in modules.values()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and _is_api(node)
    ]
    assert {f.name for f in apis} >= {"classify", "classify_array"}
    for function in apis:
        for arg in function.args.args[1:]:
            names = _type_names(arg.annotation, aliases) if arg.annotation else {"<unannotated>"}
            assert "Context" in names or not names & {"str", "PurePath", "PathLike", "<unannotated>"}, (
                f"{function.name}({arg.arg}: {names}): a request could send a file-system path"
            )
    # Path parameters are uploads: request bodies are IODescriptors whose Path fields BentoML fills
    # with a temporary copy of the uploaded bytes, and their parsers never build a path themselves.
    classes = [node for tree in modules.values() for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
    made = _made_models(modules)  # `X = create_model(..., __base__=Y)`: name -> base
    descriptors: dict[str, ast.ClassDef] = {}
    while True:  # subclasses of bentoml.IODescriptor, and of those
        more = {
            c.name: c
            for c in classes
            if any(_dotted(b).endswith("IODescriptor") or _dotted(b) in descriptors for b in c.bases)
        }
        more |= {name: descriptors[base] for name, base in made.items() if base in descriptors}
        if more.keys() <= descriptors.keys():
            break
        descriptors |= more
    assert {"AudioUpload", "SamplesInput"} <= descriptors.keys() and "ClipOptions" in made
    import service.inputs

    for name in made:  # fields made at import: checked on the model itself
        for field, info in getattr(service.inputs, name).model_fields.items():
            assert str not in _plain_types(info.annotation), f"{name}.{field} takes a string"
    descriptors = [cls for name, cls in descriptors.items() if name not in made]
    for cls in descriptors:
        for node in ast.walk(cls):
            if isinstance(node, ast.AnnAssign):
                names = _type_names(node.annotation, aliases)
                assert "str" not in names, f"{cls.name}.{ast.unparse(node.target)} takes a string"
            if isinstance(node, ast.Call):
                assert _dotted(node.func).split(".")[-1] not in {"Path", "open", "PurePath"}, (
                    f"{cls.name} builds a path or opens a file from request data: {ast.unparse(node)}"
                )


def test_bentoml_refuses_a_string_for_a_path_field(tmp_path):
    """What the static check relies on: a `Path` field of a request body takes uploaded bytes (saved
    to a temporary file), and a string sent for it (a path on the server) is refused."""
    import io

    import bentoml
    from bentoml._internal.context import _request_var
    from pydantic import ValidationError
    from starlette.datastructures import UploadFile
    from starlette.requests import Request

    class Upload(bentoml.IODescriptor):
        audio: Path

    secret = write_tone(tmp_path / "secret.wav")
    token = _request_var.set(Request({"type": "http", "method": "POST", "headers": [], "path": "/"}))
    try:
        with pytest.raises(ValidationError, match="Invalid file type"):
            Upload.model_validate({"audio": str(secret)})
        parsed = Upload.model_validate({"audio": UploadFile(io.BytesIO(b"uploaded bytes"), filename="a.wav")})
    finally:
        _request_var.reset(token)
    assert parsed.audio.read_bytes() == b"uploaded bytes" and parsed.audio.parent != secret.parent
    os.unlink(parsed.audio)
