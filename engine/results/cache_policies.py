"""Cache policies: how a task run's cache key is computed (Prefect 3's policies and algebra).

A policy's ``compute_key(task_ctx, inputs, flow_parameters)`` returns a string key, or None for
"do not cache". ``task_ctx`` is any object with ``.task`` (whose ``.fn`` is the user function)
and ``.task_run`` (with ``.id`` and ``.flow_run_id``). Keys are hex digests, the same in every
process. Policies are immutable values: ``+`` and ``-`` build new ones.

Algebra, as in Prefect: ``a + b`` is a ``CompoundCachePolicy`` of both (nested compounds are
flattened, ``NONE``/``NO_CACHE`` are left out, their ``Inputs`` members merge into one that
excludes the union of their names, placed last); ``policy - "x"`` excludes parameter ``x`` from
the policy's ``Inputs`` (a policy that does not look at inputs is returned unchanged).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from millstream._engine.exceptions import NotSupportedError, UnhashableInputError
from millstream._engine.results.hashing import hash_inputs, hash_objects, stable_hash

__all__ = [
    "CacheKeyFnPolicy",
    "CachePolicy",
    "CompoundCachePolicy",
    "DEFAULT",
    "FLOW_PARAMETERS",
    "FlowParameters",
    "INPUTS",
    "Inputs",
    "NONE",
    "NO_CACHE",
    "RUN_ID",
    "RunId",
    "TASK_SOURCE",
    "TaskSource",
    "source_fingerprint",
    "task_input_hash",
]

CacheKeyFn = Callable[[Any, dict[str, Any]], "str | None"]


@dataclass(frozen=True, repr=False)
class CachePolicy:
    """Base of cache policies: computes a task run's cache key (None: do not cache).

    ``skip_lookup`` tells ``NO_CACHE`` (never look a cached result up) from ``NONE``.
    ``isolation_level`` ("READ_COMMITTED" or "SERIALIZABLE") and ``lock_manager`` are set by
    ``configure``: SERIALIZABLE runs with the same key one at a time, the later ones then
    finding the first one's cached result.
    """

    skip_lookup: ClassVar[bool] = False
    key_storage: Any = field(default=None, kw_only=True, compare=True)
    isolation_level: Any = field(default=None, kw_only=True)
    lock_manager: Any = field(default=None, kw_only=True)

    def compute_key(
        self,
        task_ctx: Any,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """The cache key for this task run, or None for no caching."""
        raise NotImplementedError(f"{type(self).__name__} does not implement compute_key()")

    @classmethod
    def from_cache_key_fn(cls, cache_key_fn: CacheKeyFn) -> CacheKeyFnPolicy:
        """A policy from a ``cache_key_fn(context, parameters) -> str | None``."""
        return CacheKeyFnPolicy(cache_key_fn)

    def __add__(self, other: CachePolicy) -> CachePolicy:
        if not isinstance(other, CachePolicy):
            return NotImplemented
        # No caching is the identity of +: NONE + INPUTS is INPUTS, as in Prefect.
        if isinstance(other, _None):
            return self
        if isinstance(self, _None):
            return other
        for name, what in (
            ("key_storage", "storage locations"),
            ("isolation_level", "isolation levels"),
            ("lock_manager", "lock implementations"),
        ):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine is not None and theirs is not None and mine != theirs:
                raise ValueError(f"Cannot add CachePolicies with different {what}.")
        return CompoundCachePolicy(
            policies=[*_members(self), *_members(other)],
            key_storage=self.key_storage or other.key_storage,
            isolation_level=self.isolation_level or other.isolation_level,
            lock_manager=self.lock_manager or other.lock_manager,
        )

    def __sub__(self, name: str) -> CachePolicy:
        if not isinstance(name, str):
            raise TypeError(
                "Can only subtract strings from key policies. Only parameter names (str) can "
                f"be subtracted from a cache policy, got {name!r}"
            )
        return self._without(name)

    def _without(self, name: str) -> CachePolicy:
        # A policy that does not look at inputs has nothing to exclude.
        return self

    def configure(
        self,
        key_storage: Any = None,
        lock_manager: Any = None,
        isolation_level: Any = None,
    ) -> CachePolicy:
        """A copy with a lock manager and isolation level (what is not given is kept).

        ``isolation_level="SERIALIZABLE"`` with a ``lock_manager`` (``MemoryLockManager()``)
        makes task runs with the same cache key wait for each other. ``key_storage`` (where
        Prefect writes cache records) is refused: cache entries are kept in the engine's
        database, shared by every process and machine that uses it.
        """
        if key_storage is not None:
            given = [
                name
                for name, value in (
                    ("key_storage", key_storage),
                    ("lock_manager", lock_manager),
                    ("isolation_level", isolation_level),
                )
                if value is not None
            ]
            raise NotSupportedError(
                f"{type(self).__name__}.configure({', '.join(given)}=...): key_storage is not "
                "supported: cache entries are kept in the engine's database (shared by every "
                "process using it; point MILLSTREAM_DATABASE_PATH at a shared file or use the "
                "PostgreSQL store to share them across machines)"
            )
        if isolation_level is not None:
            level = getattr(isolation_level, "value", isolation_level)
            if level not in ("READ_COMMITTED", "SERIALIZABLE"):
                raise ValueError(
                    f"isolation_level must be 'READ_COMMITTED' or 'SERIALIZABLE', got "
                    f"{isolation_level!r}"
                )
        changes: dict[str, Any] = {}
        if lock_manager is not None:
            changes["lock_manager"] = lock_manager
        if isolation_level is not None:
            changes["isolation_level"] = isolation_level
        configured: CachePolicy = self._replace(**changes) if changes else self
        return configured

    def _replace(self, **changes: Any) -> Any:
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        # The configuration shows only when set: most policies have none.
        shown = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _CONFIG_FIELDS and value is None:
                continue
            shown.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"


def _members(policy: CachePolicy) -> tuple[CachePolicy, ...]:
    return policy.policies if isinstance(policy, CompoundCachePolicy) else (policy,)


def _merge(policies: Iterable[CachePolicy]) -> tuple[CachePolicy, ...]:
    """Members of a compound: nested compounds flattened, one ``Inputs`` last (the union of
    the excluded names, sorted), the others in order without repeats (Prefect keeps repeats;
    they change nothing but the key's value)."""
    merged: list[CachePolicy] = []
    excluded: set[str] = set()
    inputs: Inputs | None = None
    for policy in policies:
        for member in _members(policy):
            if isinstance(member, Inputs):
                inputs = inputs or member
                excluded.update(member.exclude)
            elif member not in merged:  # the same policy twice adds nothing to the key
                merged.append(member)
    if inputs is not None:
        merged.append(inputs._replace(exclude=sorted(excluded)))
    return tuple(merged)


_CONFIG_FIELDS = frozenset({"key_storage", "isolation_level", "lock_manager"})


def _configure(policy: CachePolicy, key_storage: Any, isolation_level: Any, lock: Any) -> None:
    object.__setattr__(policy, "key_storage", key_storage)
    object.__setattr__(policy, "isolation_level", isolation_level)
    object.__setattr__(policy, "lock_manager", lock)


@dataclass(frozen=True, repr=False)
class Inputs(CachePolicy):
    """The task run's inputs, minus the ``exclude``d parameter names.

    None (no caching) when the task has no inputs at all, as in Prefect.
    """

    exclude: tuple[str, ...] = ()

    def __init__(
        self,
        exclude: Iterable[str] | None = None,
        *,
        key_storage: Any = None,
        isolation_level: Any = None,
        lock_manager: Any = None,
    ) -> None:
        _configure(self, key_storage, isolation_level, lock_manager)
        if isinstance(exclude, str):
            raise TypeError(
                f"Inputs(exclude=...) takes a list of parameter names, not the string {exclude!r}"
            )
        names = tuple(exclude or ())
        for name in names:
            if not isinstance(name, str):
                raise TypeError(f"Inputs(exclude=...) takes parameter names, got {name!r}")
        object.__setattr__(self, "exclude", names)

    def compute_key(
        self,
        task_ctx: Any,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """A hash of the inputs that are not excluded."""
        if not inputs:
            return None
        if self.exclude:
            inputs = {k: v for k, v in inputs.items() if k not in self.exclude}
        return hash_inputs(inputs)

    def _without(self, name: str) -> CachePolicy:
        if name in self.exclude:
            return self
        without: CachePolicy = self._replace(exclude=(*self.exclude, name))
        return without


# Source fingerprints by function: reading source means file I/O and tokenizing, and a function
# object's source does not change while it lives. Weak keys: functions made at runtime go away.
_fingerprints: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def _task_fn(task_ctx: Any) -> Any:
    task = getattr(task_ctx, "task", None)
    fn = getattr(task, "fn", None)
    if fn is None:
        # Engine-level runs may have no sdk Task object, only the spec.
        fn = getattr(getattr(task_ctx, "spec", None), "fn", None)
    return fn


def source_fingerprint(fn: Any) -> str:
    """A digest of what ``fn`` does: its source, else its code, else its qualified name.

    Source is found by ``inspect.getsource`` (decorated functions are unwrapped; bound methods
    use their function; callable objects their class). Without source (a REPL, ``exec``),
    the code object is hashed; without code (builtins), the qualified name.
    """
    target = getattr(fn, "__func__", fn)
    try:
        return _fingerprints[target]
    except (KeyError, TypeError):
        pass
    fingerprint = _fingerprint(target)
    try:
        _fingerprints[target] = fingerprint
    except TypeError:  # not weak-referenceable: computed each time
        pass
    return fingerprint


def _fingerprint(fn: Any) -> str:
    if isinstance(fn, functools.partial):
        try:
            bound = hash_objects(fn.args, fn.keywords)
        except UnhashableInputError:
            bound = "unhashable"
        return stable_hash("partial", source_fingerprint(fn.func), bound)
    candidates: list[Any] = [fn]
    if not isinstance(fn, types.FunctionType | types.BuiltinFunctionType | type):
        candidates.append(type(fn))  # a callable object: its class holds the code
    for candidate in candidates:
        try:
            return stable_hash("source", inspect.getsource(candidate))
        except (OSError, TypeError):
            continue
    code = getattr(inspect.unwrap(fn), "__code__", None)
    if isinstance(code, types.CodeType):
        return stable_hash("code", hash_objects(code))
    cls = fn if isinstance(fn, type) else type(fn)
    name = getattr(fn, "__qualname__", None) or cls.__qualname__
    module = getattr(fn, "__module__", None) or cls.__module__
    return stable_hash("name", f"{module}.{name}")


@dataclass(frozen=True, repr=False)
class TaskSource(CachePolicy):
    """The source code of the task's function (None outside a task run)."""

    def compute_key(
        self,
        task_ctx: Any,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """A digest of the task function's source (see ``source_fingerprint``)."""
        fn = _task_fn(task_ctx)
        return None if fn is None else source_fingerprint(fn)


@dataclass(frozen=True, repr=False)
class RunId(CachePolicy):
    """The flow run id, or the task run id outside a flow: caches within one run only."""

    def compute_key(
        self,
        task_ctx: Any,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """The run id as a string (None outside a task run)."""
        task_run = getattr(task_ctx, "task_run", None)
        if task_run is None:
            return None
        run_id = task_run.flow_run_id
        if run_id is None:
            run_id = task_run.id
        return None if run_id is None else str(run_id)


@dataclass(frozen=True, repr=False)
class FlowParameters(CachePolicy):
    """The parameters of the flow run the task runs in (None when there are none)."""

    def compute_key(
        self,
        task_ctx: Any,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """A hash of the flow run's parameters."""
        if not flow_parameters:
            return None
        return hash_inputs(flow_parameters, kind="flow parameter")


@dataclass(frozen=True, repr=False)
class _None(CachePolicy):
    """Never a key: no caching (``NONE``)."""

    def compute_key(
        self,
        task_ctx: Any,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """Always None."""
        return None


@dataclass(frozen=True, repr=False)
class _NoCache(_None):
    """No caching and no cache lookup either (``NO_CACHE``)."""

    skip_lookup: ClassVar[bool] = True


@dataclass(frozen=True, repr=False)
class CompoundCachePolicy(CachePolicy):
    """Several policies at once: a hash of their keys (None when every member gives None).

    Built flattened, as in Prefect: nested compounds give their members, and every ``Inputs``
    member merges into one, last, excluding the union of their names.
    """

    policies: tuple[CachePolicy, ...] = field(default=())

    def __init__(
        self,
        policies: Iterable[CachePolicy] | None = None,
        *,
        key_storage: Any = None,
        isolation_level: Any = None,
        lock_manager: Any = None,
    ) -> None:
        _configure(self, key_storage, isolation_level, lock_manager)
        members = tuple(policies or ())
        for policy in members:
            if not isinstance(policy, CachePolicy):
                raise TypeError(f"CompoundCachePolicy members must be CachePolicy, got {policy!r}")
        object.__setattr__(self, "policies", _merge(members))

    def compute_key(
        self,
        task_ctx: Any,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """A hash of the members' keys, in order (a member's None counts as a value)."""
        keys = [p.compute_key(task_ctx, inputs, flow_parameters, **kwargs) for p in self.policies]
        if all(key is None for key in keys):
            return None
        return hash_objects(*keys)

    def _without(self, name: str) -> CachePolicy:
        without: CachePolicy = self._replace(policies=[p._without(name) for p in self.policies])
        return without


@dataclass(frozen=True, repr=False)
class CacheKeyFnPolicy(CachePolicy):
    """A user function ``cache_key_fn(context, parameters) -> str | None``."""

    cache_key_fn: CacheKeyFn

    def compute_key(
        self,
        task_ctx: Any,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """What the function returns; ``TypeError`` naming it if that is not a str or None."""
        key = self.cache_key_fn(task_ctx, inputs)
        if key is not None and not isinstance(key, str):
            raise TypeError(
                f"cache_key_fn {getattr(self.cache_key_fn, '__qualname__', self.cache_key_fn)!r} "
                f"must return a str or None, got {type(key).__qualname__}: {key!r}"
            )
        return key


INPUTS = Inputs()
TASK_SOURCE = TaskSource()
RUN_ID = RunId()
FLOW_PARAMETERS = FlowParameters()
NONE = _None()
NO_CACHE = _NoCache()
DEFAULT = TASK_SOURCE + RUN_ID + INPUTS


@dataclass(frozen=True, repr=False)
class _DefaultWhenPersisted(CachePolicy):
    """The policy of a task that sets neither ``cache_policy`` nor ``persist_result``: DEFAULT
    when its run persists results (its flow's choice, or ``results.persist_by_default``),
    else no caching, as Prefect 3.9.1 does. Inputs that cannot be hashed mean no caching
    here (the user asked for no cache), where an explicit policy fails the run naming them."""

    def compute_key(
        self,
        task_ctx: Any,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """DEFAULT's key when the run persists its result, else None."""
        if not getattr(task_ctx, "persist_result", False):
            return None
        try:
            return DEFAULT.compute_key(task_ctx, inputs, flow_parameters, **kwargs)
        except UnhashableInputError:
            return None

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT_WHEN_PERSISTED = _DefaultWhenPersisted()


def task_input_hash(context: Any, arguments: dict[str, Any]) -> str | None:
    """Prefect's ``cache_key_fn`` helper: a hash of the task, its source and its arguments.

    Returns None (the run is not cached) when an argument cannot be hashed, as Prefect does.
    """
    task = getattr(context, "task", None)
    task_key = getattr(task, "task_key", None) or getattr(task, "name", None)
    if task_key is None:
        task_key = getattr(getattr(context, "task_run", None), "task_key", None)
    fn = _task_fn(context)
    try:
        return hash_objects(
            task_key,
            None if fn is None else source_fingerprint(fn),
            hash_inputs(arguments),
        )
    except UnhashableInputError:
        return None
