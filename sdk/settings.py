"""Settings for users: ``get_current_settings()``, ``temporary_settings(...)``, ``Settings`` and
one ``Setting`` object per setting (``MILLSTREAM_RESULTS_PERSIST_BY_DEFAULT.value()``), also
under Prefect's names where a setting means the same (``PREFECT_RESULTS_PERSIST_BY_DEFAULT``)."""

from typing import Any

from millstream._engine.settings import Settings, get_current_settings, temporary_settings
from millstream._engine.settings.objects import SETTINGS, Setting, setting

__all__ = ["SETTINGS", "Setting", "Settings", "get_current_settings", "temporary_settings"]


def __getattr__(name: str) -> Any:
    # ``from millstream.settings import MILLSTREAM_LOGGING_LEVEL`` (or ``PREFECT_LOGGING_LEVEL``).
    if name.startswith(("MILLSTREAM_", "PREFECT_")):
        return setting(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *SETTINGS])
