"""The package's shape: light import, one-way layers, global settings, no import cycles."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import torch

import scgtl

SRC = Path(scgtl.__file__).parent

#: The scgtl packages each layer may import (besides itself and the private top-level modules).
ALLOWED = {
    "data": set(),
    "module": {"data"},
    "guide": set(),
    "train": {"guide", "module"},
    "model": {"data", "guide", "module", "train"},
    "benchmark": {"data", "datasets", "model", "models"},
    "models": {"data", "datasets", "model"},
    "datasets": set(),
    "tl": {"model"},
    "pl": {"tl", "model", "benchmark"},
}


def _imported_modules(code: str) -> list[str]:
    """Python code -> the modules it loads, in a fresh interpreter (as JSON)."""
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_import_scgtl_is_light():
    loaded = set(_imported_modules("import scgtl"))
    heavy = {"torch", "sklearn", "scvi", "scanpy", "scgtl.benchmark", "scgtl.datasets"}
    assert not loaded & heavy


def test_cli_help_loads_no_heavy_library():
    code = (
        "import contextlib, io\nfrom scgtl._cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n        main(['benchmark', '--help'])\n    except SystemExit:\n        pass"
    )
    loaded = set(_imported_modules(code))
    assert not loaded & {"torch", "sklearn", "scvi", "scanpy"}


def test_models_load_without_benchmark_or_datasets():
    loaded = set(_imported_modules("import scgtl.model"))
    assert "scgtl.model" in loaded
    assert not loaded & {"scgtl.benchmark", "scgtl.datasets"}


def test_lazy_attributes_resolve_to_the_real_objects():
    from scgtl.model import GTL

    assert scgtl.GTL is GTL
    assert scgtl.benchmark.few_shot.__module__ == "scgtl.benchmark._few_shot"
    assert set(scgtl.__all__) <= set(dir(scgtl))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = scgtl.nothing


def test_version_is_the_installed_one():
    assert scgtl.__version__ == version("scgtl")


def _scgtl_imports(path: Path) -> set[str]:
    """The scgtl subpackages a file imports, at module level or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
            if node.module == "scgtl":
                modules += [f"scgtl.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if parts[0] == "scgtl" and len(parts) > 1 and not parts[1].startswith("_"):
                names.add(parts[1])
    return names


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layers_import_only_the_layers_below(layer):
    for path in sorted((SRC / layer).glob("*.py")):
        imported = _scgtl_imports(path) - {layer, "GTL", "GTLClassifier", "settings"}
        assert imported <= ALLOWED[layer], f"{path.name} imports {imported - ALLOWED[layer]}"


def _module_name(path: Path) -> str:
    parts = ["scgtl", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules a file imports anywhere: top level, functions, type checking."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in modules}
    return found


def test_no_import_cycles():
    files = {_module_name(path): path for path in SRC.rglob("*.py")}
    modules = set(files)
    # A package's own modules may import its __init__'s names; that is not a cycle.
    graph = {
        name: {m for m in _module_imports(path, modules) if not name.startswith(f"{m}.")} - {name}
        for name, path in files.items()
    }
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for imported in sorted(graph[name]):
            if state.get(imported) == "open":
                cycle = trail[trail.index(imported) :] + [imported]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if imported not in state:
                visit(imported, [*trail, imported])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_no_layer_imports_the_package_root_for_its_version():
    for layer in ALLOWED:
        for path in (SRC / layer).glob("*.py"):
            assert "from scgtl import __version__" not in path.read_text(), path


def test_settings_threads_apply_inside_scgtl_calls_only():
    from scgtl._settings import uses_threads

    @uses_threads
    def seen_threads() -> int:
        return torch.get_num_threads()

    before = torch.get_num_threads()
    assert scgtl.settings.n_threads == 1
    assert seen_threads() == 1
    assert torch.get_num_threads() == before
    try:
        scgtl.settings.n_threads = 2
        assert torch.get_num_threads() == before  # setting it changes nothing outside scgtl
        assert seen_threads() == 2
        with scgtl.settings.threads(1):  # the block's scgtl calls use 1 thread too
            assert torch.get_num_threads() == 1
            assert scgtl.settings.n_threads == 1
            assert seen_threads() == 1
        assert scgtl.settings.n_threads == 2
        scgtl.settings.n_threads = None
        assert seen_threads() == before
    finally:
        scgtl.settings.n_threads = 1
    assert torch.get_num_threads() == before


def test_settings_limit_blas_threads_too():
    from threadpoolctl import threadpool_info

    with scgtl.settings.threads(1):
        assert all(pool["num_threads"] == 1 for pool in threadpool_info())


@pytest.mark.parametrize("value", [0, -1, 1.5, "2", True])
def test_settings_reject_bad_thread_counts(value):
    with pytest.raises(ValueError, match="n_threads"):
        scgtl.settings.n_threads = value
    with pytest.raises(ValueError, match="n_threads"), scgtl.settings.threads(value):
        pass
    assert scgtl.settings.n_threads == 1
