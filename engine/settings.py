"""Settings from MILLSTREAM_* environment variables and $MILLSTREAM_HOME/millstream.toml."""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

import msgspec


class LoggingSettings(msgspec.Struct, frozen=True, kw_only=True):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    format: Literal["console", "json"] = "console"
    max_lines_per_run: int = 10_000


class ResultsSettings(msgspec.Struct, frozen=True, kw_only=True):
    persist_by_default: bool = False
    default_serializer: str = "msgpack"
    pickle_fallback: bool = True
    inline_max_bytes: int = 64 * 1024
    local_storage_path: Path | None = None


class TasksSettings(msgspec.Struct, frozen=True, kw_only=True):
    default_retries: int = 0
    default_retry_delay_seconds: float | list[float] = 0
    refresh_cache: bool = False


class FlowsSettings(msgspec.Struct, frozen=True, kw_only=True):
    default_retries: int = 0
    default_retry_delay_seconds: float = 0


class ServeSettings(msgspec.Struct, frozen=True, kw_only=True):
    poll_interval: float = 0.5
    heartbeat_seconds: float = 10.0
    lease_seconds: float = 30.0


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    home: Path
    database_path: Path
    logging: LoggingSettings = LoggingSettings()
    results: ResultsSettings = ResultsSettings()
    tasks: TasksSettings = TasksSettings()
    flows: FlowsSettings = FlowsSettings()
    serve: ServeSettings = ServeSettings()


_cache: tuple[tuple[str | None, ...], Settings] | None = None
_NAMES = ("MILLSTREAM_HOME", "MILLSTREAM_DATABASE_PATH", "MILLSTREAM_RESULTS_PICKLE")
_override: ContextVar[dict[str, Any] | None] = ContextVar("settings_override", default=None)


def get_current_settings() -> Settings:
    global _cache
    snapshot = tuple(os.environ.get(n) for n in _NAMES)
    if _cache is not None and _cache[0] == snapshot and _override.get() is None:
        return _cache[1]
    home = Path(os.environ.get("MILLSTREAM_HOME") or "~/.millstream").expanduser().absolute()
    home.mkdir(parents=True, exist_ok=True)
    db = os.environ.get("MILLSTREAM_DATABASE_PATH")
    pickle = os.environ.get("MILLSTREAM_RESULTS_PICKLE", "true").lower() not in ("false", "0")
    settings = Settings(
        home=home,
        database_path=Path(db).expanduser().absolute() if db else home / "millstream.db",
        results=ResultsSettings(pickle_fallback=pickle, local_storage_path=home / "storage"),
    )
    _cache = (snapshot, settings)
    return settings
