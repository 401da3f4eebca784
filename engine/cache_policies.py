"""Cache policies: how a task run's cache key is computed (Prefect 3's policies and algebra)."""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from engine.hashing import hash_inputs, hash_objects, stable_hash


class CachePolicy:
    """Computes a cache key from a task run's context and inputs (None: do not cache)."""

    def compute_key(
        self,
        task_ctx: Any,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        raise NotImplementedError

    def __add__(self, other: CachePolicy) -> CachePolicy:
        if not isinstance(other, CachePolicy):
            return NotImplemented
        mine = self.policies if isinstance(self, CompoundCachePolicy) else [self]
        theirs = other.policies if isinstance(other, CompoundCachePolicy) else [other]
        return CompoundCachePolicy(policies=[*mine, *theirs])

    def __sub__(self, name: str) -> CachePolicy:
        if not isinstance(name, str):
            raise TypeError(f"Only parameter names can be subtracted from a policy, got {name!r}")
        return self._without(name)

    def _without(self, name: str) -> CachePolicy:
        return self

    def configure(
        self,
        key_storage: Any = None,
        lock_manager: Any = None,
        isolation_level: Any = None,
    ) -> CachePolicy:
        """Prefect's knobs for where keys live and how they are locked: not configurable here."""
        from engine.exceptions import NotSupportedError

        given = {
            k: v
            for k, v in {
                "key_storage": key_storage,
                "lock_manager": lock_manager,
                "isolation_level": isolation_level,
            }.items()
            if v is not None
        }
        if given:
            raise NotSupportedError(
                f"CachePolicy.configure({', '.join(given)}): cache entries live in the SQLite "
                "database of the embedded engine and are not configurable"
            )
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Inputs(CachePolicy):
    """The task's inputs, minus the excluded parameter names."""

    def __init__(self, exclude: Iterable[str] | None = None) -> None:
        if isinstance(exclude, str):
            raise TypeError(f"exclude must be a list of names, not the string {exclude!r}")
        self.exclude = list(exclude or [])

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        excluded = set(self.exclude)
        return hash_inputs({k: v for k, v in inputs.items() if k not in excluded})

    def _without(self, name: str) -> CachePolicy:
        return Inputs(exclude=[*self.exclude, name])

    def __repr__(self) -> str:
        return f"Inputs(exclude={self.exclude!r})"


_sources: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def _source_of(fn: Any) -> str:
    # Reading source is slow (file I/O, tokenizing) and does not change within a process.
    try:
        return _sources[fn]
    except (KeyError, TypeError):
        pass
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        if code is not None:
            source = stable_hash(code.co_code, repr(code.co_consts))
        else:
            source = getattr(fn, "__qualname__", repr(fn))
    try:
        _sources[fn] = source
    except TypeError:
        pass
    return source


class TaskSource(CachePolicy):
    """The source code of the task's function."""

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        fn = getattr(getattr(task_ctx, "task", None), "fn", None)
        return stable_hash(_source_of(fn)) if fn is not None else None


class RunId(CachePolicy):
    """The flow run id (the task run id outside a flow): caches within one run only."""

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        task_run = getattr(task_ctx, "task_run", None)
        if task_run is None:
            return None
        run_id = task_run.flow_run_id or task_run.id
        return str(run_id)


class FlowParameters(CachePolicy):
    """The parameters of the flow run the task runs in."""

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        return hash_inputs(flow_parameters)


class _None(CachePolicy):
    """Never a key: no caching."""

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        return None


class NoCache(_None):
    """No caching, and no cache lookup either."""


class CompoundCachePolicy(CachePolicy):
    """Several policies together: a hash of their keys (None when every one gives None)."""

    def __init__(self, policies: list[CachePolicy] | None = None) -> None:
        self.policies = list(policies or [])

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        keys = [p.compute_key(task_ctx, inputs, flow_parameters, **kwargs) for p in self.policies]
        if all(k is None for k in keys):
            return None
        return hash_objects(keys)

    def _without(self, name: str) -> CachePolicy:
        return CompoundCachePolicy([p._without(name) for p in self.policies])

    def __repr__(self) -> str:
        return f"CompoundCachePolicy(policies={self.policies!r})"


class CacheKeyFnPolicy(CachePolicy):
    """A user function ``cache_key_fn(context, parameters) -> str | None``."""

    def __init__(self, cache_key_fn: Callable[[Any, dict[str, Any]], str | None]) -> None:
        self.cache_key_fn = cache_key_fn

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        key = self.cache_key_fn(task_ctx, inputs)
        if key is not None and not isinstance(key, str):
            raise TypeError(
                f"cache_key_fn {self.cache_key_fn!r} must return a str or None, got {key!r}"
            )
        return key

    def __repr__(self) -> str:
        return f"CacheKeyFnPolicy({self.cache_key_fn!r})"


INPUTS = Inputs()
TASK_SOURCE = TaskSource()
RUN_ID = RunId()
FLOW_PARAMETERS = FlowParameters()
NONE = _None()
NO_CACHE = NoCache()
DEFAULT = INPUTS + TASK_SOURCE + RUN_ID


def task_input_hash(context: Any, arguments: dict[str, Any]) -> str | None:
    """Prefect's ``cache_key_fn`` helper: the task's identity, its source and its arguments.

    Returns None (no caching) when an argument cannot be hashed, as Prefect does.
    """
    from engine.exceptions import UnhashableInputError

    task = getattr(context, "task", None)
    fn = getattr(task, "fn", None)
    try:
        return hash_objects(
            getattr(context.task_run, "task_key", None) if hasattr(context, "task_run") else None,
            _source_of(fn) if fn is not None else None,
            hash_inputs(arguments),
        )
    except UnhashableInputError:
        return None
