"""The package's import layers: no module imports a module of a higher layer.

Read statically from the source (every ``import`` / ``from ... import`` of a
``zsgjax`` module anywhere in a file, function bodies included), so an upward import
fails here even when it sits in a branch the other tests never run.
"""

import ast
import pathlib

import pytest

import zsgjax

# lowest first; a package may import its own layer and the layers below
LAYERS = (
    ("checks", "types", "configs", "reporting", "tabular", "options", "presets"),
    ("envs", "replay", "checkpoint"),
    ("context_gradients", "agents", "sharding"),
    ("methods", "rollout", "evaluate", "evaluation_store", "distributed"),
    ("train",),
    ("memory",),
    ("runner",),
    ("offline", "adapters"),
    ("cli", "__main__"),
)
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}
ROOT = pathlib.Path(zsgjax.__file__).parent


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "zsgjax" and len(parts) > 1 else None


def _imports(path: pathlib.Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {p for p in map(_package, found) if p is not None}


def _modules():
    return sorted(p for p in ROOT.rglob("*.py") if p.name != "__init__.py" or p.parent != ROOT)


def test_every_package_has_a_layer():
    packages = {p.relative_to(ROOT).parts[0].removesuffix(".py") for p in _modules()}
    assert packages <= set(LAYER_OF), f"packages without a layer: {sorted(packages - set(LAYER_OF))}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_upward_import(path):
    own = path.relative_to(ROOT).parts[0].removesuffix(".py")
    upward = sorted(dep for dep in _imports(path) if dep in LAYER_OF and LAYER_OF[dep] > LAYER_OF[own])
    assert not upward, f"zsgjax/{path.relative_to(ROOT)} (layer of '{own}') imports higher layers: {upward}"
