"""The library's shape: stages that import in one direction, small modules, nothing written twice,
and a service and demo that load no training code."""

from __future__ import annotations

import ast
import io
import keyword
import os
import subprocess
import sys
import tokenize
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import REPO_ROOT

LIBRARY = REPO_ROOT / "pipeline"
MAX_LINES = 300
REPEAT_LINES = 6


def _module(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The library modules `path` imports anywhere in it (module level or inside functions)."""
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # `from . import x`
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in LIBRARY.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


@pytest.mark.fast
def test_the_library_has_no_import_cycle():
    graph, state, cycles = _graph(), {}, []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*trail[trail.index(target) :], target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []
    assert "pipeline.training.setup" in graph["pipeline.training.loop"]  # the graph is really read


@pytest.mark.fast
def test_data_and_inference_import_no_training_module():
    graph = _graph()
    for module, targets in graph.items():
        if not module.startswith("pipeline.training") and module != "pipeline.cli":
            assert not {t for t in targets if t.startswith("pipeline.training")}, module


@pytest.mark.fast
@pytest.mark.parametrize("module", ["pipeline.config", "pipeline.model"])
def test_the_configuration_and_the_model_import_no_stage_above_them(module):
    """Configuration and model sit below the stages (data, training, inference) that use them."""
    stages = ("pipeline.data", "pipeline.training", "pipeline.inference")
    assert not {t for t in _graph()[module] if t.startswith(stages)}, module


@pytest.mark.fast
def test_no_module_is_long():
    lengths = {str(p.relative_to(REPO_ROOT)): len(p.read_text().splitlines()) for p in LIBRARY.rglob("*.py")}
    assert {path: n for path, n in lengths.items() if n > MAX_LINES} == {}


def _shapes(path: Path) -> list[tuple[int, str]]:
    """(line, shape) of each line of logic: names become N, strings S, numbers 0. Imports and lines
    of data alone (no call, no keyword: the rows of a table) are left out."""
    lines = defaultdict(list)
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if tok.type == tokenize.NAME:
            lines[tok.start[0]].append(tok.string if keyword.iskeyword(tok.string) else "N")
        elif tok.type in (tokenize.STRING, tokenize.NUMBER, tokenize.OP):
            lines[tok.start[0]].append({tokenize.STRING: "S", tokenize.NUMBER: "0"}.get(tok.type, tok.string))
    shapes = []
    for number, parts in sorted(lines.items()):
        text = " ".join(parts)
        if parts[0] not in ("import", "from") and ("N (" in text or any(map(keyword.iskeyword, parts))):
            shapes.append((number, text))
    return shapes


@pytest.mark.fast
def test_no_block_of_code_is_written_twice():
    """No run of six lines of logic appears twice in the library, not even with other names."""
    places = defaultdict(list)
    for path in sorted(LIBRARY.rglob("*.py")):
        shapes = _shapes(path)
        for i in range(len(shapes) - REPEAT_LINES + 1):
            window = tuple(shape for _, shape in shapes[i : i + REPEAT_LINES])
            places[window].append(f"{path.relative_to(REPO_ROOT)}:{shapes[i][0]}")
    assert [where for where in places.values() if len(where) > 1] == []


@pytest.mark.fast
def test_the_loss_is_written_once():
    calls = [
        f"{path.relative_to(REPO_ROOT)}:{n}"
        for path in LIBRARY.rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if "cross_entropy(" in line
    ]
    assert calls == ["pipeline/training/setup.py:" + calls[0].rpartition(":")[2]], calls


def test_the_service_and_the_demo_load_no_training_module(store):
    """A fresh interpreter that imports the service (and with it the demo and the model service)."""
    home, tag = store
    code = (
        "import sys, service.service, demo.__main__; "
        "print(sorted({m.rpartition('.')[0] if m.count('.') > 1 else m for m in sys.modules "
        "if m.startswith('pipeline.')}))"
    )
    env = {**os.environ, "BENTOML_HOME": str(home), "SER_MODEL_TAG": tag}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = done.stdout.strip().splitlines()[-1]
    assert "pipeline.inference" in loaded and "pipeline.data" in loaded  # what serving needs
    assert "pipeline.training" not in loaded
