"""Helpers shared by test folders (tests/ is on ``sys.path``: its conftest.py lives there)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from millstream import aserve


async def with_worker(
    deployments: list[Any], body: Callable[[], Awaitable[Any]], **serve_options: Any
) -> Any:
    """Apply ``deployments``, serve them in this event loop while ``body()`` runs, then stop
    the worker; what ``body`` returned."""
    for dep in deployments:
        await dep.aapply()  # so that the body can trigger runs before the worker has started
    worker = asyncio.ensure_future(
        aserve(*deployments, print_starting_message=False, **serve_options)
    )
    try:
        await asyncio.sleep(0)
        return await body()
    finally:
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker
