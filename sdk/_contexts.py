"""Prefect's context API beyond the run contexts: ``ContextModel``, ``SettingsContext``,
``TagsContext``, ``serialize_context`` and ``hydrated_context``.

``serialize_context()`` captures what can cross to another thread or process: the current
settings (as ``MILLSTREAM_*`` values), tags and the ids of the current runs; ``hydrated_context``
enters the settings and tags again. Run contexts hold live objects (the flow, its store, its
loop) that are not rebuilt elsewhere: hydrating the context of a run that is not the current
one raises ``NotSupportedError`` rather than pretending.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping
from contextvars import ContextVar, Token
from typing import Any, ClassVar, Self

from millstream._engine.exceptions import NotSupportedError
from millstream._engine.orchestrate.context import flow_run_var, tags_var, task_run_var
from millstream._engine.settings import Settings, get_current_settings, temporary_settings

__all__ = [
    "ContextModel",
    "SettingsContext",
    "TagsContext",
    "get_settings_context",
    "hydrated_context",
    "serialize_context",
]

_UNSET: Any = object()


class ContextModel:
    """Base of context objects: declare fields as annotated class attributes and a
    ``__var__ = ContextVar(...)``; ``with Model(field=...) as ctx`` makes it current and
    ``Model.get()`` returns it. Unknown fields are refused, as in Prefect."""

    __var__: ClassVar[ContextVar[Any]]

    def __init__(self, **data: Any) -> None:
        fields = self._fields()
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unexpected fields: {', '.join(unknown)} "
                f"(fields: {', '.join(fields) or 'none'})"
            )
        for name in fields:
            if name in data:
                value = data[name]
            else:
                value = copy.copy(getattr(type(self), name, _UNSET))
                if value is _UNSET:
                    raise TypeError(f"{type(self).__name__} needs a value for {name!r}")
            object.__setattr__(self, name, value)
        self._set = frozenset(data)
        self._token: Token[Any] | None = None

    @classmethod
    def _fields(cls) -> list[str]:
        names: list[str] = []
        for klass in reversed(cls.__mro__):
            for name, hint in getattr(klass, "__annotations__", {}).items():
                if "ClassVar" in str(hint) or name.startswith("_") or name in names:
                    continue
                names.append(name)
        return names

    def __enter__(self) -> Self:
        if self._token is not None:
            raise RuntimeError("Context already entered. Context enter calls cannot be nested.")
        self._token = self.__var__.set(self)
        return self

    def __exit__(self, *_: Any) -> None:
        if self._token is None:
            raise RuntimeError("Asymmetric use of context. Context exit called without an enter.")
        self.__var__.reset(self._token)
        self._token = None

    @classmethod
    def get(cls) -> Self | None:
        """The current context of this kind, or None."""
        value: Self | None = cls.__var__.get(None)
        return value

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy (not entered), with ``update`` applied."""
        values = {name: getattr(self, name) for name in self._fields()}
        if deep:
            values = copy.deepcopy(values)
        values.update(update or {})
        return type(self)(**values)

    def serialize(self, include_secrets: bool = True) -> dict[str, Any]:
        """The fields that were given, as a dict."""
        return {name: getattr(self, name) for name in self._fields() if name in self._set}

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self._fields())

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._fields())
        return f"{type(self).__name__}({fields})"


class SettingsContext(ContextModel):
    """The settings in effect (``SettingsContext.get().settings``); there are no profiles."""

    profile: Any = None
    settings: Any = None

    __var__: ClassVar[ContextVar[Any]] = ContextVar("settings_context")

    @classmethod
    def get(cls) -> SettingsContext:
        """The entered settings context, else one holding the current settings."""
        entered: SettingsContext | None = cls.__var__.get(None)
        if entered is not None:
            return entered
        return cls(settings=get_current_settings())

    def __enter__(self) -> Self:
        entered = super().__enter__()
        settings = self.settings
        if isinstance(settings, Settings):
            stack = contextlib.ExitStack()
            stack.enter_context(temporary_settings(settings.to_environment_variables()))
            self._stack: contextlib.ExitStack | None = stack
        return entered

    def __exit__(self, *exc: Any) -> None:
        stack = getattr(self, "_stack", None)
        if stack is not None:
            stack.close()
            self._stack = None
        super().__exit__(*exc)

    def serialize(self, include_secrets: bool = True) -> dict[str, Any]:
        """The settings as ``MILLSTREAM_*`` environment values."""
        settings = self.settings if isinstance(self.settings, Settings) else get_current_settings()
        values = settings.to_environment_variables(exclude_defaults=True)
        if not include_secrets:
            values.pop("MILLSTREAM_SERVE_TOKEN", None)
        return {"settings": values}


def get_settings_context() -> SettingsContext:
    """The current settings context."""
    return SettingsContext.get()


class TagsContext(ContextModel):
    """The tags applied by enclosing ``tags(...)`` blocks."""

    current_tags: Any = frozenset()

    __var__: ClassVar[ContextVar[Any]] = ContextVar("tags_context")

    @classmethod
    def get(cls) -> TagsContext:
        """The tags in effect now."""
        return cls(current_tags=set(tags_var.get()))


def _run_ids() -> tuple[dict[str, Any], dict[str, Any]]:
    flow_ctx = flow_run_var.get()
    task_ctx = task_run_var.get()
    flow_part = {} if flow_ctx is None else {"flow_run_id": str(flow_ctx.flow_run.id)}
    task_part = {} if task_ctx is None else {"task_run_id": str(task_ctx.task_run.id)}
    return flow_part, task_part


def serialize_context(asset_ctx_kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What ``hydrated_context`` needs to recreate this context elsewhere (plain data)."""
    flow_part, task_part = _run_ids()
    flow_ctx = flow_run_var.get()
    deployment = getattr(flow_ctx, "deployment", None) if flow_ctx is not None else None
    return {
        "flow_run_context": flow_part,
        "task_run_context": task_part,
        "tags_context": {"current_tags": sorted(tags_var.get())},
        "settings_context": SettingsContext.get().serialize(),
        "asset_context": dict(asset_ctx_kwargs or {}),
        "deployment_id": getattr(deployment, "id", None),
        "deployment_parameters": getattr(deployment, "parameters", None),
    }


@contextlib.contextmanager
def hydrated_context(
    serialized_context: Mapping[str, Any] | None = None, client: Any = None
) -> Iterator[None]:
    """Enter the settings and tags of ``serialize_context()``'s output. The run contexts it
    names must be the current ones (a run's live objects do not cross threads or processes)."""
    data = dict(serialized_context or {})
    flow_part, task_part = _run_ids()
    for key, current in (("flow_run_context", flow_part), ("task_run_context", task_part)):
        wanted = data.get(key) or {}
        if wanted and wanted != current:
            raise NotSupportedError(
                f"hydrated_context({key}={wanted!r}): run contexts hold live objects and are "
                "not rebuilt outside their run; pass values (parameters, ids) to the code "
                "instead, and read runs with get_client()"
            )
    with contextlib.ExitStack() as stack:
        settings = (data.get("settings_context") or {}).get("settings")
        if settings:
            stack.enter_context(temporary_settings(dict(settings)))
        wanted_tags = (data.get("tags_context") or {}).get("current_tags")
        if wanted_tags:
            token = tags_var.set(tags_var.get() | frozenset(wanted_tags))
            stack.callback(tags_var.reset, token)
        yield
