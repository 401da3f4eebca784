"""Settings: typed MILLSTREAM_* configuration from overrides, environment, toml and defaults.

Every setting has a dotted name, an attribute path on ``Settings`` and an environment name:

- ``home`` — ``MILLSTREAM_HOME`` (default ``~/.millstream``); holds ``millstream.toml``.
- ``database_path`` — ``MILLSTREAM_DATABASE_PATH`` (default ``<home>/millstream.db``), and
  ``database_url`` — ``MILLSTREAM_DATABASE_URL`` (default unset: a ``postgresql://`` URL keeps
  the store in PostgreSQL instead). They sit at the top level of ``Settings``
  (``settings.database_path``), not in a section.
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

from millstream._engine.settings.keys import (
    ENV_NAMES,
    FlowsSettings,
    LimitsSettings,
    LoggingSettings,
    ResultsSettings,
    ServeSettings,
    Settings,
    StoreSettings,
    TasksSettings,
    setting_names,
)
from millstream._engine.settings.loading import (
    database_path,
    get_current_settings,
    home_dir,
    temporary_settings,
)

__all__ = [
    "ENV_NAMES",
    "FlowsSettings",
    "LimitsSettings",
    "LoggingSettings",
    "ResultsSettings",
    "ServeSettings",
    "StoreSettings",
    "Settings",
    "TasksSettings",
    "database_path",
    "get_current_settings",
    "home_dir",
    "setting_names",
    "temporary_settings",
]
