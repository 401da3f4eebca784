"""Package rules: engine never imports sdk; public modules keep a sorted __all__."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_engine_never_imports_sdk():
    offenders = []
    for path in (ROOT / "engine").rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n == "sdk" or n.startswith("sdk.")]
    assert offenders == []


def _sdk_modules() -> list[str]:
    import sdk

    names = ["sdk"]
    for info in pkgutil.walk_packages(sdk.__path__, "sdk."):
        if not info.name.split(".")[-1].startswith("_") and info.name != "sdk.demo":
            names.append(info.name)
    return names


@pytest.mark.parametrize("module_name", _sdk_modules())
def test_public_modules_have_sorted_all_that_resolves(module_name):
    module = importlib.import_module(module_name)
    exported = getattr(module, "__all__", None)
    if exported is None:
        pytest.skip(f"{module_name} has no __all__")
    assert list(exported) == sorted(exported)
    for name in exported:
        assert hasattr(module, name), f"{module_name}.{name}"


def test_every_engine_module_opens_with_a_docstring():
    missing = [
        p.name
        for p in (ROOT / "engine").glob("*.py")
        if ast.get_docstring(ast.parse(p.read_text())) is None
    ]
    assert missing == []
