"""Settings: typed MILLSTREAM_* configuration from overrides, environment, toml and defaults.

Every setting has a dotted name, an attribute path on ``Settings`` and an environment name:

- ``home`` — ``MILLSTREAM_HOME`` (default ``~/.millstream``); holds ``millstream.toml``.
- ``database_path`` — ``MILLSTREAM_DATABASE_PATH`` (default ``<home>/millstream.db``). Both sit
  at the top level of ``Settings`` (``settings.database_path``), not in a section.
- ``<section>.<key>`` — ``MILLSTREAM_<SECTION>_<KEY>``, e.g. ``logging.level`` is
  ``MILLSTREAM_LOGGING_LEVEL``. ``MILLSTREAM_RESULTS_PICKLE`` is an alias of
  ``MILLSTREAM_RESULTS_PICKLE_FALLBACK`` (the canonical name wins when both are set).

Sources, highest priority first: ``temporary_settings(updates)``, environment variables,
``<home>/millstream.toml`` (top-level ``database_path`` and one table per section:
``[results]`` then ``persist_by_default = true``), ``temporary_settings(set_defaults=...)``, the
built-in defaults. Environment values are text, converted leniently (``"true"``/``"0"`` to bools,
``"3"`` to numbers, ``"[1, 2]"`` to a list); an empty environment variable counts as unset;
unknown ``MILLSTREAM_*`` variables are ignored (other tools may set some). The toml file is
typed already and converted strictly; an unknown key in it is an error. Paths are expanded
(``~``) and made absolute against the current directory. A bad value raises
``ConfigurationError`` naming where it came from (environment name, toml key and file, or
``temporary_settings`` key) and the value.

``get_current_settings()`` is cached: each call compares the values of the known environment
names (about 1 µs: a dict lookup per name on ``os.environ``'s encoded store, no scan of the whole
environment) and stats the toml file (about 2 µs), and rebuilds only when one of them changed.
The file is stat'ed on every call rather than every N ms so that an edit is seen at once, as an
environment change is; a same-size rewrite within the file system's timestamp granularity
leaves ``stat`` unchanged, so while the file's mtime is that close to when it was read the
content is compared too (git's "racy clean" rule).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import msgspec

from millstream._engine.exceptions import ConfigurationError

__all__ = [
    "ENV_NAMES",
    "FlowsSettings",
    "LoggingSettings",
    "ResultsSettings",
    "ServeSettings",
    "Settings",
    "StoreSettings",
    "TasksSettings",
    "database_path",
    "get_current_settings",
    "home_dir",
    "setting_names",
    "temporary_settings",
]

_NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
_PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
_NonNegative = Annotated[float, msgspec.Meta(ge=0)]
_Positive = Annotated[float, msgspec.Meta(gt=0)]
_Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]

DEFAULT_HOME = "~/.millstream"
TOML_NAME = "millstream.toml"


def _default_home() -> Path:
    try:
        return Path(DEFAULT_HOME).expanduser().absolute()
    except RuntimeError:  # no home directory known (no $HOME, no passwd entry)
        return Path(DEFAULT_HOME).absolute()


class LoggingSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How run logs are shown and kept (``settings.logging``)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    format: Literal["console", "json"] = "console"
    max_lines_per_run: _NonNegativeInt = 10_000


class ResultsSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How results are persisted (``settings.results``)."""

    persist_by_default: bool = False
    default_serializer: Literal["msgpack", "json", "pickle"] = "msgpack"
    pickle_fallback: bool = True
    # Results encoded larger than this are written as files under local_storage_path.
    inline_max_bytes: _NonNegativeInt = 64 * 1024
    # The default depends on home (<home>/storage); get_current_settings() always fills it in.
    local_storage_path: Path = msgspec.field(default_factory=lambda: _default_home() / "storage")


class TasksSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Defaults for tasks that do not set their own (``settings.tasks``)."""

    default_retries: _NonNegativeInt = 0
    default_retry_delay_seconds: _NonNegative | list[_NonNegative] = 0
    refresh_cache: bool = False
    # ThreadPoolTaskRunner() without max_workers: None is unbounded (Prefect's sys.maxsize).
    runner_thread_pool_max_workers: _PositiveInt | None = None


class FlowsSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Defaults for flows that do not set their own (``settings.flows``)."""

    default_retries: _NonNegativeInt = 0
    default_retry_delay_seconds: _NonNegative = 0


class ServeSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Workers: polling, liveness of runs (heartbeats, leases) and the local HTTP API."""

    poll_interval: _Positive = 0.5
    heartbeat_seconds: _Positive = 10.0
    # A run whose lease is not renewed for this long is taken as crashed; must exceed heartbeats.
    lease_seconds: _Positive = 30.0
    late_grace_seconds: _NonNegative = 60.0
    late_runs: Literal["run", "skip"] = "run"
    shutdown_grace_seconds: _NonNegative = 10.0
    webserver_host: str = "127.0.0.1"
    webserver_port: _Port = 8080
    token: str | None = None


class StoreSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The write-behind store (``settings.store``)."""

    # Writes queued and not yet taken by the writer; a producer that finds the queue this full
    # waits for the writer, so memory stays bounded however many runs a process makes.
    queue_max_items: _PositiveInt = 8_192


_SECTIONS: dict[str, type[msgspec.Struct]] = {
    "logging": LoggingSettings,
    "results": ResultsSettings,
    "tasks": TasksSettings,
    "flows": FlowsSettings,
    "serve": ServeSettings,
    "store": StoreSettings,
}


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """All settings, one frozen value; read the current ones with ``get_current_settings()``."""

    home: Path
    database_path: Path
    logging: LoggingSettings = LoggingSettings()
    results: ResultsSettings = ResultsSettings()
    tasks: TasksSettings = TasksSettings()
    flows: FlowsSettings = FlowsSettings()
    serve: ServeSettings = ServeSettings()
    store: StoreSettings = StoreSettings()

    def value_of(self, name: str) -> Any:
        """The value of one setting, by dotted name (``"logging.level"``) or environment name."""
        section, _, key = _canonical(name, "Settings.value_of").partition(".")
        return getattr(getattr(self, section), key) if key else getattr(self, section)

    def to_environment_variables(self, *, exclude_defaults: bool = False) -> dict[str, str]:
        """``{MILLSTREAM_NAME: text}`` that rebuild these settings when exported (``None`` is
        left out); with ``exclude_defaults``, only the settings that differ from the defaults."""
        defaults = _defaults_for(self.home)
        out: dict[str, str] = {}
        for field in _FIELDS.values():
            value = self.value_of(field.dotted)
            if value is None or (exclude_defaults and value == defaults[field.dotted]):
                continue
            out[field.env] = _to_text(value)
        return out


# -- the table of settings ----------------------------------------------------------------------


class _Field:
    """One setting: its names, its type and how values are converted."""

    __slots__ = ("default", "dotted", "env", "is_path", "key", "section", "takes_list", "type")

    def __init__(self, section: str, key: str, type_: Any, default: Any) -> None:
        self.section = section
        self.key = key
        self.dotted = f"{section}.{key}" if section else key
        self.env = f"MILLSTREAM_{self.dotted.replace('.', '_').upper()}"
        self.type = type_
        self.default = default
        self.is_path = type_ is Path
        # Only such settings read "[1, 2]" from the environment as JSON; others keep the text.
        self.takes_list = any(get_origin(t) is list for t in (type_, *get_args(type_)))


def _field_table() -> dict[str, _Field]:
    table = {
        "home": _Field("", "home", Path, None),
        "database_path": _Field("", "database_path", Path, None),
    }
    for section, cls in _SECTIONS.items():
        for info in msgspec.structs.fields(cls):
            table[f"{section}.{info.name}"] = _Field(section, info.name, info.type, info.default)
    return table


_FIELDS = _field_table()
_ALIASES = {"MILLSTREAM_RESULTS_PICKLE": "results.pickle_fallback"}
_BY_ENV = {field.env: field.dotted for field in _FIELDS.values()} | _ALIASES
# Every environment name read, in a fixed order: the cache compares their values as a tuple.
ENV_NAMES: tuple[str, ...] = (*_BY_ENV,)


def setting_names() -> dict[str, str]:
    """``{dotted name: environment name}`` of every setting (the CLI lists them)."""
    return {field.dotted: field.env for field in _FIELDS.values()}


def _canonical(key: str, where: str) -> str:
    if key in _FIELDS:
        return key
    dotted = _BY_ENV.get(key)
    if dotted is None:
        raise ConfigurationError(
            f"Unknown setting {key!r} in {where}; known: dotted names like 'logging.level' or "
            f"environment names like 'MILLSTREAM_LOGGING_LEVEL'"
        )
    return dotted


# -- converting and checking values ---------------------------------------------------------------


def _bad(label: str, value: Any, reason: str) -> ConfigurationError:
    return ConfigurationError(f"Setting {label} has a bad value {value!r}: {reason}")


def _convert(field: _Field, value: Any, label: str, *, text: bool) -> Any:
    # text: the value came from an environment variable (or a string override) and is parsed;
    # otherwise it is already typed (toml, Python) and only ints widen to floats.
    if field.is_path:
        if not isinstance(value, str | os.PathLike):
            raise _bad(label, value, "expected a path")
        try:
            return Path(value).expanduser().absolute()
        except RuntimeError as exc:  # "~" with no home directory known
            raise _bad(label, value, str(exc)) from None
    raw = value
    if text and field.takes_list and isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise _bad(label, raw, f"not a JSON list ({exc})") from None
    if field.dotted == "logging.level" and isinstance(value, str):
        value = value.upper()
    try:
        converted = msgspec.convert(value, field.type, strict=not text)
    except msgspec.ValidationError as exc:
        raise _bad(label, raw, str(exc)) from None
    numbers = converted if isinstance(converted, list) else [converted]
    if any(isinstance(n, float) and not math.isfinite(n) for n in numbers):
        raise _bad(label, raw, "expected a finite number")
    return converted


def _to_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return json.dumps(value)
    return str(value)


def _defaults_for(home: Path) -> dict[str, Any]:
    defaults = {dotted: field.default for dotted, field in _FIELDS.items()}
    defaults["home"] = _default_home()
    defaults["database_path"] = home / "millstream.db"
    defaults["results.local_storage_path"] = home / "storage"
    return defaults


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
            elif key == "database_path":
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
    if serve_lease <= serve_beat:
        raise ConfigurationError(
            f"Setting {labels['serve.lease_seconds']} = {serve_lease!r} must be greater than "
            f"{labels['serve.heartbeat_seconds']} = {serve_beat!r}: a run's lease must outlast "
            "the interval between its heartbeats"
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
    settings = Settings(home=home, database_path=values["database_path"], **sections)
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
        new_defaults[dotted] = (value, f"{key} in temporary_settings(set_defaults=...)")
    given = {**(updates or {}), **{k.replace("__", "."): v for k, v in kwargs.items()}}
    for key, value in given.items():
        dotted = _canonical(key, "temporary_settings")
        new_updates[dotted] = (value, f"{key} in temporary_settings")
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
