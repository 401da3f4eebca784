"""Loading flows from entrypoints (``prefect.flows``' loaders) and ``Flow.from_source`` for local
directories.

An entrypoint is ``path/to/file.py:flow_name``, ``path/to/file.py:Class.method`` or
``package.module.flow_name``. ``load_flow_from_entrypoint`` runs the file; when running it fails
(a dependency missing here) it falls back, as Prefect does, to ``safe_load_flow_from_entrypoint``,
which runs the file's statements one by one and keeps what works.
"""

from __future__ import annotations

import ast
import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

from millstream._engine.exceptions import MissingFlowError, NotSupportedError, ScriptError
from millstream.utilities.importtools import import_object, safe_load_namespace

__all__ = [
    "afrom_source",
    "from_source",
    "is_entrypoint_async",
    "load_flow_arguments_from_entrypoint",
    "load_flow_from_entrypoint",
    "load_function_and_convert_to_flow",
    "load_placeholder_flow",
    "safe_load_flow_from_entrypoint",
]

logger = logging.getLogger("millstream.flows")

_DEFAULT_ARGUMENTS = frozenset(
    {
        "name",
        "version",
        "retries",
        "retry_delay_seconds",
        "description",
        "timeout_seconds",
        "validate_parameters",
        "persist_result",
        "cache_result_in_memory",
        "log_prints",
    }
)


def _split(entrypoint: str) -> tuple[str, str]:
    if ":" in entrypoint:
        path, name = entrypoint.rsplit(":", 1)
    else:
        path, _, name = entrypoint.rpartition(".")
    return path, name


def _flow_class() -> Any:
    from millstream.flows import Flow

    return Flow


def load_flow_from_entrypoint(entrypoint: str, use_placeholder_flow: bool = True) -> Any:
    """The flow at ``entrypoint``, running its file. ``MissingFlowError`` when the name is not
    there or is not a flow; ``ScriptError`` when the file raises (unless a flow can still be
    found by ``safe_load_flow_from_entrypoint`` and ``use_placeholder_flow``)."""
    path, name = _split(entrypoint)
    try:
        obj = import_object(entrypoint)
    except AttributeError as exc:
        raise MissingFlowError(f"Flow function with name {name!r} not found in {path!r}. ") from exc
    except ScriptError:
        if not use_placeholder_flow:
            raise
        obj = safe_load_flow_from_entrypoint(entrypoint)
        if obj is None:
            raise
    if not isinstance(obj, _flow_class()):
        raise MissingFlowError(
            f"Function with name {name!r} is not a flow. Make sure that it is decorated with "
            "'@flow'."
        )
    return obj


def load_function_and_convert_to_flow(entrypoint: str) -> Any:
    """The flow at ``entrypoint``; a plain function there is made a flow (``log_prints=True``)."""
    path, name = _split(entrypoint)
    try:
        obj = import_object(entrypoint)
    except AttributeError as exc:
        raise RuntimeError(f"Function with name {name!r} not found in {path!r}.") from exc
    flow_cls = _flow_class()
    return obj if isinstance(obj, flow_cls) else flow_cls(obj, log_prints=True)


def _definition_and_source(entrypoint: str) -> tuple[ast.AST, str, list[str]]:
    """The AST of the entrypoint's function or class, the file's source, the attribute parts."""
    path, object_path = _split(entrypoint)
    if ":" in entrypoint:
        source = Path(path).read_text()
    else:
        spec = importlib.util.find_spec(path)
        if spec is None or not spec.origin:
            raise ValueError(f"Could not find module {path!r}")
        source = Path(spec.origin).read_text()
    parts = object_path.split(".")
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, kinds) and node.name == parts[0]:
            return node, source, parts
    raise ValueError(f"Could not find object {parts[0]!r} in {path!r}")


def _method_of(node: ast.AST, parts: list[str]) -> ast.AST | None:
    if isinstance(node, ast.ClassDef) and len(parts) >= 2:
        for stmt in node.body:
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef) and stmt.name == parts[1]:
                return stmt
        return None
    return node


def safe_load_flow_from_entrypoint(entrypoint: str) -> Any:
    """The flow at ``entrypoint`` without failing on what cannot run here: the file's statements
    run one by one; a flow whose annotations or defaults cannot be evaluated is rebuilt
    without them. None when no flow can be had."""
    node, source, parts = _definition_and_source(entrypoint)
    path = entrypoint.rsplit(":", 1)[0] if ":" in entrypoint else None
    namespace = safe_load_namespace(source, filepath=path)
    if parts[0] not in namespace:
        target = _method_of(node, parts)
        if isinstance(target, ast.FunctionDef | ast.AsyncFunctionDef):
            return _sanitized(target, namespace)
        return None
    obj: Any = namespace[parts[0]]
    for part in parts[1:]:
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _evaluates(node: ast.expr, namespace: dict[str, Any]) -> bool:
    try:
        eval(compile(ast.Expression(node), "<ast>", "eval"), namespace)
    except Exception:
        return False
    return True


def _sanitized(func: ast.FunctionDef | ast.AsyncFunctionDef, namespace: dict[str, Any]) -> Any:
    args = func.args
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    every += [a for a in (args.vararg, args.kwarg) if a is not None]
    for arg in every:
        if arg.annotation is not None and not _evaluates(arg.annotation, namespace):
            arg.annotation = None
    args.defaults = [
        d if _evaluates(d, namespace) else ast.Constant(value=None) for d in args.defaults
    ]
    args.kw_defaults = [
        d if d is None or _evaluates(d, namespace) else ast.Constant(value=None)
        for d in args.kw_defaults
    ]
    if func.returns is not None and not _evaluates(func.returns, namespace):
        func.returns = None
    module = ast.fix_missing_locations(ast.Module(body=[func], type_ignores=[]))
    try:
        exec(compile(module, "<sanitized>", "exec"), namespace)
    except Exception as exc:
        logger.debug("Could not load %s after removing what does not evaluate: %r", func.name, exc)
        return None
    return namespace.get(func.name)


def load_flow_arguments_from_entrypoint(
    entrypoint: str, arguments: list[str] | set[str] | None = None
) -> dict[str, Any]:
    """The ``@flow(...)`` keyword arguments of the entrypoint's flow, read from its source
    (values as strings, as Prefect gives them); ``name`` defaults to the function's name with
    ``-`` for ``_``."""
    node, source, _ = _definition_and_source(entrypoint)
    path = entrypoint.rsplit(":", 1)[0] if ":" in entrypoint else None
    wanted = set(arguments) if arguments is not None else set(_DEFAULT_ARGUMENTS)
    result: dict[str, Any] = {}
    namespace: dict[str, Any] | None = None
    for decorator in getattr(node, "decorator_list", []):
        if not (isinstance(decorator, ast.Call) and getattr(decorator.func, "id", "") == "flow"):
            continue
        for keyword in decorator.keywords:
            if keyword.arg is None or keyword.arg not in wanted:
                continue
            if isinstance(keyword.value, ast.Constant):
                result[keyword.arg] = str(keyword.value.value)
                continue
            if namespace is None:
                namespace = safe_load_namespace(source, filepath=path)
            text = (ast.get_source_segment(source, keyword.value) or "").replace("\n", "")
            try:
                result[keyword.arg] = str(eval(text, namespace))
            except Exception as exc:
                logger.info("Failed to parse @flow argument %s=%s: %r", keyword.arg, text, exc)
    if "name" in wanted and "name" not in result:
        result["name"] = str(getattr(node, "name", "")).replace("_", "-")
    return result


def is_entrypoint_async(entrypoint: str) -> bool:
    """Whether the entrypoint's function is ``async def``."""
    node, _, parts = _definition_and_source(entrypoint)
    return isinstance(_method_of(node, parts), ast.AsyncFunctionDef)


def load_placeholder_flow(entrypoint: str, raises: BaseException) -> Any:
    """A flow with the entrypoint's ``@flow`` arguments whose body raises ``raises``."""

    def placeholder(*args: Any, **kwargs: Any) -> Any:
        raise raises

    async def async_placeholder(*args: Any, **kwargs: Any) -> Any:
        raise raises

    arguments: dict[str, Any] = load_flow_arguments_from_entrypoint(entrypoint, {"name"})
    fn = async_placeholder if is_entrypoint_async(entrypoint) else placeholder
    return _flow_class()(fn, **arguments)


def from_source(source: Any, entrypoint: str) -> Any:
    """The flow at ``entrypoint`` inside ``source``: a local directory (a path, or a storage
    object with a ``basepath``). URLs (git repositories, buckets) are refused."""
    if isinstance(source, str) and "://" in source:
        raise NotSupportedError(
            f"Flow.from_source({source!r}, ...): loading flows from a remote repository or "
            "bucket is not supported; clone or download it, then pass the local directory"
        )
    if isinstance(source, str | os.PathLike):
        base = Path(source)
    elif getattr(source, "basepath", None) is not None:
        base = Path(source.basepath)
    else:
        raise NotSupportedError(
            f"Flow.from_source({source!r}, ...): only local directories (a path, or "
            "LocalFileSystem(basepath=...)) are supported"
        )
    if not base.is_dir():
        raise ValueError(f"Flow.from_source: {str(base)!r} is not a directory")
    path, name = _split(entrypoint)
    if ":" in entrypoint:
        return load_flow_from_entrypoint(f"{base / path}:{name}")
    return load_flow_from_entrypoint(entrypoint)


async def afrom_source(source: Any, entrypoint: str) -> Any:
    """``from_source`` for async callers."""
    return from_source(source, entrypoint)
