"""Settings: ``get_current_settings()`` and ``temporary_settings(...)``."""

from engine.settings import Settings, get_current_settings, temporary_settings

__all__ = ["Settings", "get_current_settings", "temporary_settings"]
