"""Loading code by path or import path (``prefect.utilities.importtools``): ``import_object``,
``load_script_as_module``, ``safe_load_namespace``."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import logging
import os
import sys
import threading
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

from millstream._engine.exceptions import ScriptError
from millstream._engine.model.keys import SCRIPT_MODULE_PREFIX

__all__ = ["import_object", "load_module", "load_script_as_module", "safe_load_namespace"]

logger = logging.getLogger("millstream.importtools")

# sys.path is process-wide: one loader changes it at a time.
_sys_path_lock = threading.Lock()


def _script_module_name(path: Path) -> str:
    # The name recovery uses for the same file, so both find one module in sys.modules.
    return f"{SCRIPT_MODULE_PREFIX}{uuid.uuid5(uuid.NAMESPACE_URL, str(path)).hex[:12]}"


def load_script_as_module(path: str) -> ModuleType:
    """Run the script at ``path`` as a module (its directory and the working directory on
    ``sys.path`` meanwhile); an exception it raises is wrapped in ``ScriptError``."""
    if not str(path).endswith(".py"):
        raise ValueError(f"The provided path does not point to a python file: {path!r}")
    resolved = Path(path).resolve()
    name = _script_module_name(resolved)
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise ValueError(f"Cannot load {path!r} as a module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        with _sys_path_lock:
            sys.path.insert(0, os.getcwd())
            sys.path.insert(0, str(resolved.parent))
            try:
                spec.loader.exec_module(module)
            finally:
                sys.path.remove(str(resolved.parent))
                sys.path.remove(os.getcwd())
    except Exception as exc:
        sys.modules.pop(name, None)
        raise ScriptError(user_exc=exc, path=str(path)) from exc
    return module


def load_module(module_name: str) -> ModuleType:
    """Import ``module_name``, with the working directory on ``sys.path`` meanwhile."""
    with _sys_path_lock:
        sys.path.insert(0, os.getcwd())
        try:
            return importlib.import_module(module_name)
        finally:
            sys.path.remove(os.getcwd())


def import_object(import_path: str) -> Any:
    """The object at ``path/to/file.py:name`` or ``package.module.name`` (``a.b`` after the
    colon walks attributes)."""
    if ":" in import_path:
        where, object_path = import_path.rsplit(":", 1)
    else:
        where, _, object_path = import_path.rpartition(".")
        if not where:
            raise ValueError(
                f"Invalid import path {import_path!r}: use 'path/to/file.py:name' or "
                "'package.module.name'"
            )
    module = load_script_as_module(where) if where.endswith(".py") else load_module(where)
    obj: Any = module
    for part in object_path.split("."):
        obj = getattr(obj, part)
    return obj


def _is_main_block(node: ast.stmt) -> bool:
    test = getattr(node, "test", None)
    return (
        isinstance(node, ast.If)
        and isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
    )


def safe_load_namespace(source_code: str, filepath: str | None = None) -> dict[str, Any]:
    """The names a module's source defines, running each top-level statement on its own and
    skipping those that fail (a missing dependency, say) and ``if __name__ == ...`` blocks."""
    namespace: dict[str, Any] = {"__name__": "millstream_safe_namespace_loader"}
    tree = ast.parse(source_code)
    extra_paths = []
    if filepath:
        directory = os.path.dirname(os.path.abspath(filepath))
        extra_paths = [directory, os.path.dirname(directory)]
        namespace["__file__"] = filepath
    with _sys_path_lock:
        sys.path[:0] = extra_paths
        try:
            for node in tree.body:
                if _is_main_block(node):
                    continue
                try:
                    code = compile(ast.Module(body=[node], type_ignores=[]), "<ast>", "exec")
                    exec(code, namespace)
                except Exception as exc:
                    logger.debug("Skipped a statement while loading a namespace: %r", exc)
        finally:
            for path in extra_paths:
                sys.path.remove(path)
    return namespace
