"""Package rules: which engine folder may import which; the engine never imports the public API;
``model/`` does no I/O; every module opens with its job; public modules keep a sorted __all__."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "engine"
E = "millstream._engine"

# What each engine folder (or top module) may import, besides itself. Lower layers never reach
# up: the model is pure, the store and results know nothing of orchestration, and only serving
# sits on top of everything. A dotted entry allows that one module of a layer.
_BELOW_ORCHESTRATION = {
    "clock",
    "observe",
    "exceptions",
    "settings",
    "model",
    "bridge",
    "store",
    "results",
    "logs",
    "validation",
    # Flow control (concurrency and rate limits as leases) sits on the store, below orchestration.
    "limits",
}
ALLOWED: dict[str, set[str]] = {
    "exceptions": set(),
    # The one clock (real unless a test installs one): every layer may read the time from it.
    "clock": set(),
    # OpenTelemetry spans and ids (imports OpenTelemetry only when the application uses it).
    "observe": set(),
    "settings": {"exceptions"},
    "model": {"exceptions", "clock"},
    "validation": {"exceptions", "model"},
    "bridge": {"exceptions", "model", "settings", "clock"},
    "results": {"exceptions", "model", "settings", "clock"},
    # Rows read back carry their recorded results as result references.
    "store": {"exceptions", "model", "settings", "results", "clock"},
    # Log lines are labelled with the current run: they read the run context, nothing else.
    "logs": {
        "exceptions",
        "model",
        "settings",
        "store",
        "orchestrate.context",
        "clock",
        "observe",
    },
    "limits": {"exceptions", "model", "settings", "store", "clock"},
    "orchestrate": _BELOW_ORCHESTRATION,
    "serve": _BELOW_ORCHESTRATION | {"orchestrate"},
}
# What the pure model may import besides itself: no threads, loops, files, sockets or SQL.
PURE = {
    "__future__",
    # Only to tell whether the caller runs a loop (State.result's Prefect rule) and to know
    # CancelledError: the model never creates, runs or waits on a loop.
    "asyncio",
    "collections",
    "dataclasses",
    "datetime",
    "enum",
    "functools",
    "hashlib",
    "inspect",
    "itertools",
    "msgspec",
    "operator",
    "os",  # only os.register_at_fork: a forked child reseeds the engine's generator
    "random",
    "sys",  # only sys.modules: where a function's module came from (model.keys)
    "time",
    "traceback",
    "typing",
    "uuid",
}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in (E, *(f"{E}.{layer}" for layer in ALLOWED)):
                names += [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                names.append(node.module)
    return names


def _layer(path: Path) -> str:
    rel = path.relative_to(ENGINE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _engine_files() -> list[Path]:
    return [p for p in ENGINE.rglob("*.py") if p.parent != ENGINE or p.name != "__init__.py"]


def _allows(allowed: set[str], target: str) -> bool:
    layer, _, module = target.partition(".")
    return layer in allowed or f"{layer}.{module.split('.')[0]}" in allowed


def test_engine_never_imports_the_public_api():
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in ENGINE.rglob("*.py")
        for name in _imports(path)
        if name.split(".")[0] in ("millstream", "sdk") and not name.startswith(E)
    ]
    assert offenders == []


def test_each_engine_folder_imports_only_the_layers_below_it():
    offenders = []
    for path in _engine_files():
        layer = _layer(path)
        for name in _imports(path):
            if name.startswith(E + "."):
                target = name[len(E) + 1 :]
                if target.split(".")[0] != layer and not _allows(ALLOWED[layer], target):
                    offenders.append(f"{path.relative_to(ROOT)} ({layer}) imports {name}")
    assert offenders == []


def test_every_engine_file_belongs_to_a_known_layer():
    assert {_layer(p) for p in _engine_files()} <= set(ALLOWED)


def test_the_model_does_no_io():
    offenders = []
    for path in (ENGINE / "model").rglob("*.py"):
        for name in _imports(path):
            if name.startswith(E + "."):
                # The clock reads the time and waits (a test may swap it): no files, no SQL.
                if name.split(".")[2] not in {"model", "exceptions", "clock"}:
                    offenders.append(f"{path.name}: {name}")
            elif name.split(".")[0] not in PURE:
                offenders.append(f"{path.name}: {name}")
    assert offenders == []


def _public_modules() -> list[str]:
    import millstream

    names = ["millstream"]
    for info in pkgutil.walk_packages(millstream.__path__, "millstream."):
        parts = info.name.split(".")
        if any(p.startswith("_") for p in parts[1:]) or info.name == "millstream.demo":
            continue
        names.append(info.name)
    return names


@pytest.mark.parametrize("module_name", _public_modules())
def test_public_modules_have_sorted_all_that_resolves(module_name):
    module = importlib.import_module(module_name)
    exported = getattr(module, "__all__", None)
    if exported is None:
        pytest.skip(f"{module_name} has no __all__")
    assert list(exported) == sorted(exported)
    for name in exported:
        assert hasattr(module, name), f"{module_name}.{name}"


def test_every_module_opens_with_a_docstring():
    missing = [
        str(p.relative_to(ROOT))
        for folder in (ENGINE, ROOT / "sdk")
        for p in folder.rglob("*.py")
        if "_engine" not in p.relative_to(ROOT).parts
        and ast.get_docstring(ast.parse(p.read_text())) is None
    ]
    assert missing == []


def test_nothing_installs_a_top_level_sdk_or_engine(tmp_path):
    # From a folder outside the checkout, only what the distribution installs is importable.
    probe = (
        "import importlib.util as u; "
        "print([n for n in ('millstream', 'sdk', 'engine') if u.find_spec(n) is not None])"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "['millstream']"


_SQL_WORDS = ("SELECT ", "INSERT ", "UPDATE ", "DELETE ")
_DB_CALLS = {"execute", "executemany", "executescript"}


def _docstrings(tree: ast.AST) -> set[int]:
    # Prose may name a statement ("one conditional UPDATE"); only code strings count.
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def test_all_sql_lives_in_the_store():
    """No SQL text and no connection calls outside engine/store/: other modules call typed
    store methods (tests and benchmarks may inspect the file directly)."""
    offenders = []
    store_folder = ENGINE / "store"
    for folder in (ENGINE, ROOT / "sdk"):
        for path in sorted(folder.rglob("*.py")):
            if store_folder in path.parents or "_engine" in path.parts:
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            prose = _docstrings(tree)
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and id(node) not in prose
                    and any(word in node.value for word in _SQL_WORDS)
                ):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: SQL text")
                elif (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in _DB_CALLS
                ):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{node.func.attr}()")
    assert offenders == []
