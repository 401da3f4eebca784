"""Loading the settings: the toml file, the environment and overrides, cached in one build."""

from __future__ import annotations

import contextlib
import os
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from millstream._engine.exceptions import ConfigurationError
from millstream._engine.settings.keys import (
    _ALIASES,
    _FIELDS,
    _SECTIONS,
    DEFAULT_HOME,
    ENV_NAMES,
    LEASE_MARGIN,
    TOML_NAME,
    Settings,
    _canonical,
    _convert,
    _defaults_for,
)

# -- the toml file ------------------------------------------------------------------------------


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


# A file modified this close to when it was read may have been rewritten within the same
# timestamp tick (coarse kernel clocks: milliseconds; some file systems: 1-2 s).
_RACY_NS = 2_000_000_000


class _TomlFile:
    """The toml file as last read: its stat signature and content, to tell whether it changed."""

    __slots__ = ("content", "path", "read_at_ns", "signature")

    def __init__(self, path: Path) -> None:
        self.path = path
        # Time and signature are taken before reading: a write racing the read changes them.
        self.read_at_ns = time.time_ns()
        self.signature = _stat(path)
        self.content: bytes | None = None
        if self.signature is not None:
            try:
                self.content = path.read_bytes()
            except OSError as exc:
                raise ConfigurationError(
                    f"Settings file {str(path)!r} cannot be read: {exc}"
                ) from None

    def unchanged(self) -> bool:
        signature = _stat(self.path)
        if signature != self.signature:
            return False
        if signature is None or self.read_at_ns - signature[0] > _RACY_NS:
            return True
        now = time.time_ns()
        try:
            if self.path.read_bytes() != self.content:
                return False
        except OSError:
            return False
        self.read_at_ns = now
        return True

    def values(self) -> dict[str, tuple[Any, str]]:
        """``{dotted name: (value, label)}`` from the file; unknown keys are errors."""
        if self.content is None:
            return {}
        where = f"{str(self.path)!r}"
        try:
            data = tomllib.loads(self.content.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"Settings file {where} is not valid TOML: {exc}") from None
        out: dict[str, tuple[Any, str]] = {}
        for key, value in data.items():
            if key in _SECTIONS:
                if not isinstance(value, dict):
                    raise ConfigurationError(
                        f"Settings file {where}: [{key}] must be a table, got {value!r}"
                    )
                for sub, item in value.items():
                    dotted = f"{key}.{sub}"
                    if dotted not in _FIELDS:
                        raise ConfigurationError(
                            f"Settings file {where} has an unknown key {dotted!r}"
                        )
                    out[dotted] = (item, f"{dotted} in {where}")
            elif key in ("database_path", "database_url", "durability"):
                out[key] = (value, f"{key} in {where}")
            else:
                hint = " (set MILLSTREAM_HOME instead)" if key == "home" else ""
                raise ConfigurationError(f"Settings file {where} has an unknown key {key!r}{hint}")
        return out


# -- overrides (temporary_settings) -------------------------------------------------------------


class _Entry:
    """A built Settings and what it was built from."""

    __slots__ = ("env", "settings", "toml")

    def __init__(self, env: tuple[Any, ...], toml: _TomlFile, settings: Settings) -> None:
        self.env = env
        self.toml = toml
        self.settings = settings


class _Layer:
    """The overrides in force in a context; immutable but for its cache of the built Settings."""

    __slots__ = ("cache", "defaults", "restored", "updates")

    def __init__(
        self,
        updates: dict[str, tuple[Any, str]],
        defaults: dict[str, tuple[Any, str]],
        restored: frozenset[str],
    ) -> None:
        self.updates = updates
        self.defaults = defaults
        # Settings whose environment and toml values are ignored (restore_defaults).
        self.restored = restored
        self.cache: _Entry | None = None


_ROOT = _Layer({}, {}, frozenset())
# A ContextVar, like Prefect's settings context: asyncio tasks and threads started inside a
# temporary_settings block inherit it, but overrides never leak between concurrent tasks.
_layer: ContextVar[_Layer] = ContextVar("millstream_settings", default=_ROOT)


# -- reading the environment ----------------------------------------------------------------------

_environ = os.environ
_environ_data = getattr(_environ, "_data", None)
_encode = getattr(_environ, "encodekey", None)


def _slow_snapshot() -> tuple[Any, ...]:
    get = os.environ.get
    return tuple([get(name) for name in ENV_NAMES])


def _fast_snapshot_factory() -> Callable[[], tuple[Any, ...]]:
    # os.environ.get costs ~0.5 µs a name (it encodes the key and decodes the value); the
    # snapshot only needs to tell values apart, so it looks the pre-encoded names up in the
    # mapping's own store, which every os.environ write (monkeypatch.setenv too) updates.
    if not isinstance(_environ_data, dict) or not callable(_encode):
        return _slow_snapshot
    keys = tuple(_encode(name) for name in ENV_NAMES)
    get = _environ_data.get

    def snapshot() -> tuple[Any, ...]:
        if os.environ is not _environ:  # replaced wholesale (a test double): read it plainly
            return _slow_snapshot()
        return tuple(map(get, keys))

    return snapshot


_snapshot = _fast_snapshot_factory()


# -- building -----------------------------------------------------------------------------------


def get_current_settings() -> Settings:
    """The settings in force in this context (cached; rebuilt when a source changed)."""
    layer = _layer.get()
    entry = layer.cache
    env = _snapshot()
    if entry is not None and entry.env == env and entry.toml.unchanged():
        return entry.settings
    # Concurrent rebuilds are harmless (same inputs, same result); the last one is kept.
    entry = _build(layer, env)
    layer.cache = entry
    return entry.settings


def _build(layer: _Layer, env_snapshot: tuple[Any, ...]) -> _Entry:
    # Environment values are read for the names whose snapshot value is set; empty means unset.
    environ = os.environ
    env: dict[str, str] = {}
    for name, seen in zip(ENV_NAMES, env_snapshot, strict=True):
        if seen is not None:
            value = environ.get(name)
            if value:
                env[name] = value

    def pick(dotted: str, file: Mapping[str, tuple[Any, str]]) -> tuple[Any, str, bool] | None:
        # (value, label, is_text) from the highest-priority source that has the setting.
        if dotted in layer.updates:
            value, label = layer.updates[dotted]
            return value, label, isinstance(value, str)
        if dotted not in layer.restored:
            field = _FIELDS[dotted]
            names = [field.env, *(alias for alias, d in _ALIASES.items() if d == dotted)]
            for name in names:
                if name in env:
                    return env[name], name, True
            if dotted in file:
                return (*file[dotted], False)
        if dotted in layer.defaults:
            value, label = layer.defaults[dotted]
            return value, label, isinstance(value, str)
        return None

    home_source = pick("home", {})
    home_label = home_source[1] if home_source else "home (default)"
    home_value, text = (home_source[0], home_source[2]) if home_source else (DEFAULT_HOME, True)
    home = _convert(_FIELDS["home"], home_value, home_label, text=text)
    toml = _TomlFile(home / TOML_NAME)
    file = toml.values()
    defaults = _defaults_for(home)
    values: dict[str, Any] = {"home": home}
    labels: dict[str, str] = {"home": home_label}
    for dotted, field in _FIELDS.items():
        if dotted == "home":
            continue
        source = pick(dotted, file)
        if source is None:
            values[dotted] = defaults[dotted]
            labels[dotted] = f"{dotted} (default)"
        else:
            value, label, text = source
            values[dotted] = _convert(field, value, label, text=text)
            labels[dotted] = label
    serve_lease, serve_beat = values["serve.lease_seconds"], values["serve.heartbeat_seconds"]
    if serve_lease < LEASE_MARGIN * serve_beat:
        raise ConfigurationError(
            f"Setting {labels['serve.lease_seconds']} = {serve_lease!r} must be greater than "
            f"{labels['serve.heartbeat_seconds']} = {serve_beat!r} by a margin (at least "
            f"{LEASE_MARGIN:g}x): a run's lease must outlast the interval between its "
            "heartbeats, or a late heartbeat loses a healthy run"
        )
    try:
        # The home directory is ours: it holds the database unless that is put elsewhere.
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(
            f"Setting {home_label} has a bad value {str(home)!r}: cannot create it ({exc})"
        ) from None
    sections: dict[str, Any] = {
        name: cls(**{f: values[f"{name}.{f}"] for f in cls.__struct_fields__})
        for name, cls in _SECTIONS.items()
    }
    settings = Settings(
        home=home,
        database_path=values["database_path"],
        database_url=values["database_url"],
        durability=values["durability"],
        **sections,
    )
    return _Entry(env_snapshot, toml, settings)


@contextlib.contextmanager
def temporary_settings(
    updates: Mapping[str, Any] | None = None,
    *,
    set_defaults: Mapping[str, Any] | None = None,
    restore_defaults: Iterable[str] | None = None,
    **kwargs: Any,
) -> Iterator[Settings]:
    """Override settings inside the block, for this context only; yields the new settings.

    Keys are dotted names (``"results.persist_by_default"``) or environment names
    (``"MILLSTREAM_RESULTS_PERSIST_BY_DEFAULT"``); keyword arguments take environment names or
    ``section__key``. ``updates`` win over every source; ``set_defaults`` apply only where
    neither the environment nor the toml file sets the setting; ``restore_defaults`` ignores the
    environment and toml file for the named settings. Blocks nest (inner ones win) and are local
    to the context (an asyncio task, a thread). Unknown keys and bad values raise
    ``ConfigurationError`` on entry.
    """
    parent = _layer.get()
    new_updates = dict(parent.updates)
    new_defaults = dict(parent.defaults)
    restored = set(parent.restored)
    for key in restore_defaults or ():
        dotted = _canonical(key, "temporary_settings(restore_defaults=...)")
        restored.add(dotted)
        new_updates.pop(dotted, None)
        new_defaults.pop(dotted, None)
    for key, value in (set_defaults or {}).items():
        dotted = _canonical(key, "temporary_settings(set_defaults=...)")
        new_defaults[dotted] = (value, f"{_label(key)} in temporary_settings(set_defaults=...)")
    given = {**(updates or {}), **{k.replace("__", "."): v for k, v in kwargs.items()}}
    for key, value in given.items():
        dotted = _canonical(key, "temporary_settings")
        new_updates[dotted] = (value, f"{_label(key)} in temporary_settings")
    token = _layer.set(_Layer(new_updates, new_defaults, frozenset(restored)))
    try:
        yield get_current_settings()
    finally:
        _layer.reset(token)


def home_dir() -> Path:
    """The Millstream home directory (``MILLSTREAM_HOME``), created if missing."""
    return get_current_settings().home


def database_path() -> Path:
    """The SQLite file runs are recorded in (``MILLSTREAM_DATABASE_PATH``)."""
    return get_current_settings().database_path


def _label(key: Any) -> str:
    """How a key given to ``temporary_settings`` is named in errors (a Setting by its name)."""
    name = getattr(key, "name", None)
    return name if isinstance(name, str) else str(key)
