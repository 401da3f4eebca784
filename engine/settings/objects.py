"""Setting objects: ``MILLSTREAM_RESULTS_PERSIST_BY_DEFAULT.value()`` and Prefect's names for them.

One ``Setting`` per setting, named by its environment name; ``value()`` reads the current
settings, and a ``Setting`` is accepted wherever a setting's name is (``temporary_settings``,
``Settings.value_of``). Prefect's names (``PREFECT_RESULTS_PERSIST_BY_DEFAULT``) are aliases of
the settings that mean the same here; they are names only: ``PREFECT_*`` environment variables
are not read (``MILLSTREAM_*`` ones are).
"""

from __future__ import annotations

from typing import Any

from millstream._engine.exceptions import NotSupportedError
from millstream._engine.settings.keys import _FIELDS, Settings
from millstream._engine.settings.loading import get_current_settings
from millstream._engine.settings.prefect_names import PREFECT_SETTING_NAMES

# Prefect's setting names -> the dotted name of the Millstream setting with the same meaning.
PREFECT_NAMES: dict[str, str] = {
    "PREFECT_HOME": "home",
    "PREFECT_LOGGING_LEVEL": "logging.level",
    "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "results.persist_by_default",
    "PREFECT_RESULTS_DEFAULT_SERIALIZER": "results.default_serializer",
    "PREFECT_LOCAL_STORAGE_PATH": "results.local_storage_path",
    "PREFECT_RESULTS_LOCAL_STORAGE_PATH": "results.local_storage_path",
    "PREFECT_DEFAULT_RESULT_STORAGE_BLOCK": "results.default_storage_block",
    "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK": "results.default_storage_block",
    "PREFECT_TASK_DEFAULT_RETRIES": "tasks.default_retries",
    "PREFECT_TASKS_DEFAULT_RETRIES": "tasks.default_retries",
    "PREFECT_TASK_DEFAULT_RETRY_DELAY_SECONDS": "tasks.default_retry_delay_seconds",
    "PREFECT_TASKS_DEFAULT_RETRY_DELAY_SECONDS": "tasks.default_retry_delay_seconds",
    "PREFECT_TASKS_REFRESH_CACHE": "tasks.refresh_cache",
    "PREFECT_TASK_RUNNER_THREAD_POOL_MAX_WORKERS": "tasks.runner_thread_pool_max_workers",
    "PREFECT_FLOW_DEFAULT_RETRIES": "flows.default_retries",
    "PREFECT_FLOWS_DEFAULT_RETRIES": "flows.default_retries",
    "PREFECT_FLOW_DEFAULT_RETRY_DELAY_SECONDS": "flows.default_retry_delay_seconds",
    "PREFECT_FLOWS_DEFAULT_RETRY_DELAY_SECONDS": "flows.default_retry_delay_seconds",
    "PREFECT_RUNNER_POLL_FREQUENCY": "serve.poll_interval",
    "PREFECT_RUNNER_SERVER_HOST": "serve.webserver_host",
    "PREFECT_RUNNER_SERVER_PORT": "serve.webserver_port",
}


class Setting:
    """One setting, by name: ``value()`` is its current value (Prefect's ``Setting``)."""

    __slots__ = ("_name", "dotted")

    def __init__(self, name: str, dotted: str) -> None:
        self._name = name
        self.dotted = dotted

    @property
    def name(self) -> str:
        """The setting's name (an environment name: ``MILLSTREAM_...`` or Prefect's)."""
        return self._name

    @property
    def accessor(self) -> str:
        """The dotted path on ``Settings`` (``"results.persist_by_default"``)."""
        return self.dotted

    @property
    def is_secret(self) -> bool:
        """Whether the value is a secret (the worker API's token)."""
        return self.dotted == "serve.token"

    def default(self) -> Any:
        """The built-in default (None where it depends on the home directory)."""
        return _FIELDS[self.dotted].default

    def value(self) -> Any:
        """The current value (``temporary_settings`` and the environment included)."""
        return self.value_from(get_current_settings())

    def value_from(self, settings: Settings) -> Any:
        """The value in ``settings``."""
        return settings.value_of(self.dotted)

    def __bool__(self) -> bool:
        return bool(self.value())

    def __str__(self) -> str:
        return str(self.value())

    def __repr__(self) -> str:
        return f"<{self._name}: {_FIELDS[self.dotted].type!r}>"

    def __eq__(self, other: object) -> bool:
        # As Prefect's: a setting compares equal to its current value.
        return bool(self.value() == other)

    def __hash__(self) -> int:
        return hash((Setting, self._name))


class UnsupportedSetting(Setting):
    """A Prefect setting with no meaning in Millstream (server, API, Cloud, UI, testing):
    importable, so that code naming it loads; reading or setting it raises
    ``NotSupportedError`` naming it."""

    __slots__ = ()

    def _refuse(self) -> NotSupportedError:
        return NotSupportedError(
            f"{self._name} has no equivalent in Millstream (no server, API, Cloud or UI "
            "settings); `millstream config` lists the settings there are"
        )

    def default(self) -> Any:
        """Refused: there is no such setting here."""
        raise self._refuse()

    def value_from(self, settings: Settings) -> Any:
        """Refused: there is no such setting here."""
        raise self._refuse()

    def __repr__(self) -> str:
        return f"<{self._name}: not supported>"


def _build() -> dict[str, Setting]:
    table = {field.env: Setting(field.env, dotted) for dotted, field in _FIELDS.items()}
    for name in PREFECT_SETTING_NAMES:
        table[name] = UnsupportedSetting(name, "")
    table.update({name: Setting(name, dotted) for name, dotted in PREFECT_NAMES.items()})
    return table


SETTINGS: dict[str, Setting] = _build()


def setting(name: str) -> Setting:
    """The ``Setting`` named ``name``; ``AttributeError`` naming it when there is none."""
    try:
        return SETTINGS[name]
    except KeyError:
        raise AttributeError(
            f"No setting named {name!r} (Prefect 3.9.1 has none by that name either)"
            if name.startswith("PREFECT_")
            else f"No setting named {name!r}"
        ) from None
