"""Deployments. ``deploy`` (images, work pools) needs Prefect's server: a clear error here."""

from __future__ import annotations

from typing import Any, NoReturn

from engine.exceptions import NotSupportedError


def deploy(*deployments: Any, **kwargs: Any) -> NoReturn:
    """Not available: building images and registering with work pools needs Prefect's server."""
    raise NotSupportedError(
        "deploy() builds images and registers deployments with work pools on Prefect's server; "
        "Millstream is embedded and runs flows in-process on its SQLite file."
    )


__all__ = ["deploy"]
