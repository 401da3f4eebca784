"""Settings for users: ``get_current_settings()``, ``temporary_settings(...)`` and ``Settings``."""

from millstream._engine.settings import Settings, get_current_settings, temporary_settings

__all__ = ["Settings", "get_current_settings", "temporary_settings"]
