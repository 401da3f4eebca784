"""Settings: MILLSTREAM_* environment variables over ``$MILLSTREAM_HOME/millstream.toml`` over
defaults, typed and validated with msgspec; ``temporary_settings`` overrides per context.

Every field is ``settings.<section>.<key>`` with the environment name
``MILLSTREAM_<SECTION>_<KEY>`` (``MILLSTREAM_LOGGING_LEVEL``); ``home`` and ``database_path``
are ``MILLSTREAM_HOME`` and ``MILLSTREAM_DATABASE_PATH``; ``MILLSTREAM_RESULTS_PICKLE`` is an
alias of ``MILLSTREAM_RESULTS_PICKLE_FALLBACK``. In the toml file sections are tables:
``[results]`` then ``persist_by_default = true``.
"""

from __future__ import annotations

import contextlib
import os
import tomllib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

import msgspec

from engine.exceptions import ConfigurationError


class LoggingSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How run logs are shown and kept."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    format: Literal["console", "json"] = "console"
    max_lines_per_run: int = 10_000


class ResultsSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How results are persisted."""

    persist_by_default: bool = False
    default_serializer: Literal["msgpack", "json", "pickle"] = "msgpack"
    pickle_fallback: bool = True
    inline_max_bytes: int = 64 * 1024
    local_storage_path: Path | None = None


class TasksSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Defaults for tasks."""

    default_retries: int = 0
    default_retry_delay_seconds: float | list[float] = 0
    refresh_cache: bool = False


class FlowsSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Defaults for flows."""

    default_retries: int = 0
    default_retry_delay_seconds: float = 0


class ServeSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Liveness of runs (heartbeats, leases) and workers."""

    poll_interval: float = 0.5
    heartbeat_seconds: float = 10.0
    lease_seconds: float = 30.0
    late_grace_seconds: float = 60.0
    late_runs: Literal["run", "skip"] = "run"
    shutdown_grace_seconds: float = 10.0
    webserver_host: str = "127.0.0.1"
    webserver_port: int = 8080
    token: str | None = None


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """All settings; read them with ``get_current_settings()``."""

    home: Path
    database_path: Path
    logging: LoggingSettings = LoggingSettings()
    results: ResultsSettings = ResultsSettings()
    tasks: TasksSettings = TasksSettings()
    flows: FlowsSettings = FlowsSettings()
    serve: ServeSettings = ServeSettings()


_SECTIONS: dict[str, type[msgspec.Struct]] = {
    "logging": LoggingSettings,
    "results": ResultsSettings,
    "tasks": TasksSettings,
    "flows": FlowsSettings,
    "serve": ServeSettings,
}
_ALIASES = {"MILLSTREAM_RESULTS_PICKLE": ("results", "pickle_fallback")}
_NONNEGATIVE = {
    ("tasks", "default_retries"),
    ("flows", "default_retries"),
    ("logging", "max_lines_per_run"),
    ("results", "inline_max_bytes"),
    ("tasks", "default_retry_delay_seconds"),
    ("flows", "default_retry_delay_seconds"),
}
_POSITIVE = {("serve", "poll_interval"), ("serve", "heartbeat_seconds"), ("serve", "lease_seconds")}
_NONNEGATIVE |= {("serve", "late_grace_seconds"), ("serve", "shutdown_grace_seconds")}


def _env_names() -> tuple[str, ...]:
    names = ["MILLSTREAM_HOME", "MILLSTREAM_DATABASE_PATH", *_ALIASES]
    for section, cls in _SECTIONS.items():
        names += [f"MILLSTREAM_{section.upper()}_{f.upper()}" for f in cls.__struct_fields__]
    return tuple(names)


ENV_NAMES = _env_names()


def _coerce(raw: str, section: str, key: str) -> Any:
    # Environment values are text: JSON-looking ones ([1, 2], 3.5, true) are decoded first, then
    # msgspec converts leniently ("5" -> 5, "false" -> False) to the field's type.
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return raw


def _dec_hook(type_: type, value: Any) -> Any:
    if type_ is Path and isinstance(value, str):
        return Path(value).expanduser().absolute()
    raise NotImplementedError(f"Cannot convert {value!r} to {type_!r}")


def _check(section: str, values: dict[str, Any], source: Mapping[str, str]) -> msgspec.Struct:
    cls = _SECTIONS[section]
    try:
        built = msgspec.convert(values, cls, strict=False, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        key = str(exc).rsplit("$.", 1)[-1].rstrip("`").split("`")[0] if "$." in str(exc) else ""
        where = source.get(key, f"{section}.{key}" if key else section)
        bad = values.get(key, values)
        raise ConfigurationError(f"Setting {where} has a bad value {bad!r}: {exc}") from None
    for field in cls.__struct_fields__:
        value = getattr(built, field)
        numbers = value if isinstance(value, list) else [value]
        if (section, field) in _NONNEGATIVE and any(
            isinstance(v, int | float) and v < 0 for v in numbers
        ):
            raise ConfigurationError(
                f"Setting {source.get(field, f'{section}.{field}')} must not be negative, "
                f"got {value!r}"
            )
        if (section, field) in _POSITIVE and value <= 0:
            raise ConfigurationError(
                f"Setting {source.get(field, f'{section}.{field}')} must be positive, got {value!r}"
            )
    return built


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"Settings file {str(path)!r} cannot be read: {exc}") from None
    for key, value in data.items():
        if key not in _SECTIONS and key != "database_path":
            raise ConfigurationError(f"Settings file {str(path)!r} has an unknown key {key!r}")
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise ConfigurationError(
                    f"Settings file {str(path)!r}: {key!r} must be a table, got {value!r}"
                )
            unknown = set(value) - set(_SECTIONS[key].__struct_fields__)
            if unknown:
                raise ConfigurationError(
                    f"Settings file {str(path)!r} has unknown key(s) "
                    f"{', '.join(f'{key}.{u}' for u in sorted(unknown))}"
                )
    return data


def _build(env: Mapping[str, str], overrides: Mapping[str, Any]) -> Settings:
    home_raw = overrides.get("home") or env.get("MILLSTREAM_HOME") or "~/.millstream"
    home = Path(home_raw).expanduser().absolute()
    toml_path = home / "millstream.toml"
    file_values = _read_toml(toml_path)
    db_raw = (
        overrides.get("database_path")
        or env.get("MILLSTREAM_DATABASE_PATH")
        or file_values.get("database_path")
    )
    sections: dict[str, Any] = {}
    for section in _SECTIONS:
        values: dict[str, Any] = {}
        source: dict[str, str] = {}
        for key, value in file_values.get(section, {}).items():
            values[key] = value
            source[key] = f"{section}.{key} in {toml_path}"
        for key in _SECTIONS[section].__struct_fields__:
            name = f"MILLSTREAM_{section.upper()}_{key.upper()}"
            for alias, target in _ALIASES.items():
                if target == (section, key) and alias in env and name not in env:
                    name = alias
            if name in env:
                values[key] = _coerce(env[name], section, key)
                source[key] = name
            dotted = f"{section}.{key}"
            if dotted in overrides:
                values[key] = overrides[dotted]
                source[key] = f"temporary setting {dotted}"
        if section == "results" and values.get("local_storage_path") is None:
            values["local_storage_path"] = str(home / "storage")
        sections[section] = _check(section, values, source)
    if home_raw == "~/.millstream" or "MILLSTREAM_HOME" in env or "home" in overrides:
        # The home directory is ours to create; a database path elsewhere must already exist.
        try:
            home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"MILLSTREAM_HOME {str(home)!r} cannot be created: {exc}"
            ) from None
    database = Path(db_raw).expanduser().absolute() if db_raw else home / "millstream.db"
    return Settings(home=home, database_path=database, **sections)


_overrides: ContextVar[dict[str, Any] | None] = ContextVar("settings_overrides", default=None)
_cache: tuple[tuple[Any, ...], Settings] | None = None


def get_current_settings() -> Settings:
    """The settings in force here (cached until the environment or the toml file changes)."""
    global _cache
    overrides = _overrides.get()
    env = os.environ
    snapshot: tuple[Any, ...] = tuple(env.get(n) for n in ENV_NAMES)
    if overrides is None:
        cached = _cache
        if cached is not None and cached[0][:-1] == snapshot:
            # The toml file is checked by mtime, only when the environment is unchanged.
            if cached[0][-1] == _toml_mtime(cached[1].home):
                return cached[1]
    values = {n: env[n] for n in ENV_NAMES if n in env}
    settings = _build(values, overrides or {})
    if overrides is None:
        _cache = ((*snapshot, _toml_mtime(settings.home)), settings)
    return settings


def _toml_mtime(home: Path) -> float | None:
    try:
        return (home / "millstream.toml").stat().st_mtime
    except OSError:
        return None


def _normalise_key(key: str) -> str:
    if key.startswith("MILLSTREAM_"):
        if key == "MILLSTREAM_HOME":
            return "home"
        if key == "MILLSTREAM_DATABASE_PATH":
            return "database_path"
        if key in _ALIASES:
            section, field = _ALIASES[key]
            return f"{section}.{field}"
        rest = key[len("MILLSTREAM_") :].lower()
        for section, cls in _SECTIONS.items():
            if rest.startswith(section + "_") and rest[len(section) + 1 :] in cls.__struct_fields__:
                return f"{section}.{rest[len(section) + 1 :]}"
        raise ConfigurationError(f"Unknown setting {key!r}")
    if key in ("home", "database_path"):
        return key
    section, _, field = key.partition(".")
    if section not in _SECTIONS or field not in _SECTIONS[section].__struct_fields__:
        raise ConfigurationError(f"Unknown setting {key!r}")
    return key


@contextlib.contextmanager
def temporary_settings(
    updates: Mapping[str, Any] | None = None, **kwargs: Any
) -> Iterator[Settings]:
    """Override settings inside the block (this context only; nested blocks stack).

    Keys are dotted names (``"results.persist_by_default"``) or environment names
    (``"MILLSTREAM_RESULTS_PERSIST_BY_DEFAULT"``); keyword arguments use ``__`` for the dot.
    """
    merged = dict(_overrides.get() or {})
    given = {**(updates or {}), **{k.replace("__", "."): v for k, v in kwargs.items()}}
    for key, value in given.items():
        merged[_normalise_key(key)] = value
    token = _overrides.set(merged)
    try:
        yield get_current_settings()
    finally:
        _overrides.reset(token)


def home_dir() -> Path:
    """The Millstream home directory."""
    return get_current_settings().home


def database_path() -> Path:
    """The SQLite file runs are recorded in."""
    return get_current_settings().database_path
