"""The settings' keys: their typed sections, names and defaults, and how a value is checked."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import msgspec

from millstream._engine.exceptions import ConfigurationError

_NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
_PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
_NonNegative = Annotated[float, msgspec.Meta(ge=0)]
_Positive = Annotated[float, msgspec.Meta(gt=0)]
_Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]

DEFAULT_HOME = "~/.millstream"
Durability = Literal["batched", "every_task"]
# A run's lease must last at least this many heartbeat intervals: one late or lost heartbeat
# never loses a healthy run to another worker.
LEASE_MARGIN = 2.0
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
    # A longer log message is stored cut to this many characters, with a marker saying so.
    max_line_chars: _PositiveInt = 1_000_000


class ResultsSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How results are persisted (``settings.results``)."""

    persist_by_default: bool = False
    default_serializer: Literal["msgpack", "json", "pickle"] = "msgpack"
    pickle_fallback: bool = True
    # Results encoded larger than this are written as files under local_storage_path.
    inline_max_bytes: _NonNegativeInt = 64 * 1024
    # The default depends on home (<home>/storage); get_current_settings() always fills it in.
    local_storage_path: Path = msgspec.field(default_factory=lambda: _default_home() / "storage")
    # "local-file-system/<name>": a LocalFileSystem saved with .save("<name>") takes the place
    # of local_storage_path (Prefect's PREFECT_DEFAULT_RESULT_STORAGE_BLOCK).
    default_storage_block: str | None = None


class TasksSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Defaults for tasks that do not set their own (``settings.tasks``)."""

    default_retries: _NonNegativeInt = 0
    default_retry_delay_seconds: _NonNegative | list[_NonNegative] = 0
    refresh_cache: bool = False
    # ThreadPoolTaskRunner() without max_workers: None is unbounded (Prefect's sys.maxsize).
    runner_thread_pool_max_workers: _PositiveInt | None = None
    # ProcessPoolTaskRunner() without max_workers: None is the machine's CPU count (Prefect's).
    runner_process_pool_max_workers: _PositiveInt | None = None


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
    # The HTTP API: request bodies larger than this get 413 before they are read; Host headers
    # accepted besides the loopback names (a bind on another address needs the token anyway);
    # triggers handled at once before 429 (each waits for its run to be recorded).
    webserver_max_body_bytes: _PositiveInt = 1_048_576
    webserver_allowed_hosts: list[str] = []
    webserver_max_inflight: _PositiveInt = 256


class StoreSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The write-behind store (``settings.store``)."""

    # Writes queued and not yet taken by the writer; a producer that finds the queue this full
    # waits for the writer, so memory stays bounded however many runs a process makes.
    queue_max_items: _PositiveInt = 8_192
    # How long a write waits for another connection's lock before the writer backs off.
    busy_timeout_seconds: _Positive = 30.0
    # How long the writer retries a batch that fails for a transient reason (a lock, an I/O
    # error, a full disk) before the flush points waiting on it raise; the rows stay queued.
    write_retry_seconds: _NonNegative = 60.0


class LimitsSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Concurrency and rate limits held as leases in the database (``settings.limits``)."""

    # How often a waiter re-reads a limit that another process may have freed (a release in
    # this process wakes its waiters at once, with no polling).
    poll_seconds: _Positive = 0.25
    # A holder that dies stops renewing its lease: its slots come back this long after.
    lease_seconds: _Positive = 300.0


_SECTIONS: dict[str, type[msgspec.Struct]] = {
    "logging": LoggingSettings,
    "results": ResultsSettings,
    "tasks": TasksSettings,
    "flows": FlowsSettings,
    "serve": ServeSettings,
    "store": StoreSettings,
    "limits": LimitsSettings,
}


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """All settings, one frozen value; read the current ones with ``get_current_settings()``."""

    home: Path
    database_path: Path
    # A PostgreSQL database that keeps everything instead of the SQLite file at database_path
    # (``postgresql://user:password@host:port/dbname``; the ``postgres`` extra): workers on
    # several hosts share their runs through it.
    database_url: str | None = None
    # "batched": task states are committed in groups (a kill may re-run the tasks that
    # finished in the last moments before it); "every_task": each task's final state is
    # durable before the next task starts (one commit per task).
    durability: Durability = "batched"
    logging: LoggingSettings = LoggingSettings()
    results: ResultsSettings = ResultsSettings()
    tasks: TasksSettings = TasksSettings()
    flows: FlowsSettings = FlowsSettings()
    serve: ServeSettings = ServeSettings()
    store: StoreSettings = StoreSettings()
    limits: LimitsSettings = LimitsSettings()

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
        "database_url": _Field("", "database_url", str | None, None),
        "durability": _Field("", "durability", Durability, "batched"),
    }
    for section, cls in _SECTIONS.items():
        for info in msgspec.structs.fields(cls):
            default = info.default
            if default is msgspec.NODEFAULT:  # a list default: msgspec keeps it as a factory
                default = info.default_factory()
            table[f"{section}.{info.name}"] = _Field(section, info.name, info.type, default)
    return table


_FIELDS = _field_table()
_ALIASES = {"MILLSTREAM_RESULTS_PICKLE": "results.pickle_fallback"}
_BY_ENV = {field.env: field.dotted for field in _FIELDS.values()} | _ALIASES
# Every environment name read, in a fixed order: the cache compares their values as a tuple.
ENV_NAMES: tuple[str, ...] = (*_BY_ENV,)


def setting_names() -> dict[str, str]:
    """``{dotted name: environment name}`` of every setting (the CLI lists them)."""
    return {field.dotted: field.env for field in _FIELDS.values()}


def _canonical(key: Any, where: str) -> str:
    # A Setting object (``settings.objects``) names its setting.
    named = getattr(key, "dotted", None)
    if isinstance(named, str) and named in _FIELDS:
        return named
    if named == "":  # a Prefect setting with no meaning here: its value() says why
        key.value()
    if key in _FIELDS:
        return str(key)
    dotted = _BY_ENV.get(key) or _prefect_name(key)
    if dotted is None and isinstance(key, str) and key in _unsupported_prefect_names():
        from millstream._engine.settings.objects import setting

        setting(key).value()  # raises NotSupportedError naming it
    if dotted is None:
        raise ConfigurationError(
            f"Unknown setting {key!r} in {where}; known: dotted names like 'logging.level' or "
            f"environment names like 'MILLSTREAM_LOGGING_LEVEL'"
        )
    return dotted


def _unsupported_prefect_names() -> frozenset[str]:
    from millstream._engine.settings.prefect_names import PREFECT_SETTING_NAMES

    return PREFECT_SETTING_NAMES


def _prefect_name(key: Any) -> str | None:
    from millstream._engine.settings.objects import PREFECT_NAMES

    return PREFECT_NAMES.get(key) if isinstance(key, str) else None


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
