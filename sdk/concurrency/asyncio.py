"""Concurrency and rate limits for async code: ``async with concurrency("db"): ...``."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any

from millstream._engine.exceptions import (
    AcquireConcurrencySlotTimeoutError,
    ConcurrencySlotAcquisitionError,
)
from millstream._engine.limits import acquire, release
from millstream.concurrency import _common


@asynccontextmanager
async def concurrency(
    names: str | list[str],
    occupy: int = 1,
    timeout_seconds: float | None = None,
    max_retries: int | None = None,
    lease_duration: float = 300,
    strict: bool = False,
    holder: Any = None,
    raise_on_lease_renewal_failure: bool | None = None,
) -> AsyncGenerator[None, None]:
    """Hold ``occupy`` slots of each named limit while the block runs, waiting on the running
    loop (no thread is blocked): the arguments and rules of ``millstream.concurrency.sync``'s
    ``concurrency`` (timeouts, retries, leases, missing limits)."""
    request = _common.concurrency_request(
        names,
        occupy,
        timeout_seconds,
        max_retries,
        lease_duration,
        holder,
        raise_on_lease_renewal_failure,
    )
    if request is None:
        yield
        return
    grant = await acquire(*request)
    _common.after_acquire(grant, request.names, strict)
    try:
        yield
    finally:
        await release(grant)


async def rate_limit(
    names: str | list[str],
    occupy: int = 1,
    timeout_seconds: float | None = None,
    strict: bool = False,
) -> None:
    """Wait (on the running loop) until ``occupy`` slots of each named limit are free, and take
    them for good: ``millstream.concurrency.sync``'s ``rate_limit`` for async code."""
    request = _common.rate_limit_request(names, occupy, timeout_seconds)
    if request is None:
        return
    _common.after_acquire(await acquire(*request), request.names, strict)


__all__ = [
    "AcquireConcurrencySlotTimeoutError",
    "ConcurrencySlotAcquisitionError",
    "concurrency",
    "rate_limit",
]
