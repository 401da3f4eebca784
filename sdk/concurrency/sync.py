"""Blocking concurrency and rate limits: ``with concurrency("db", occupy=1): ...``."""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager
from typing import Any

from millstream._engine.exceptions import (
    AcquireConcurrencySlotTimeoutError,
    ConcurrencySlotAcquisitionError,
)
from millstream._engine.limits import acquire_blocking, release_blocking
from millstream.concurrency import _common


@contextmanager
def concurrency(
    names: str | list[str],
    occupy: int = 1,
    timeout_seconds: float | None = None,
    max_retries: int | None = None,
    lease_duration: float = 300,
    strict: bool = False,
    holder: Any = None,
    raise_on_lease_renewal_failure: bool | None = None,
) -> Generator[None, None, None]:
    """Hold ``occupy`` slots of each named limit while the block runs.

    Waits until every limit has room (a release in this process wakes it at once; one in
    another process is seen within ``limits.poll_seconds``). ``timeout_seconds``: raise
    ``AcquireConcurrencySlotTimeoutError`` after that long; ``max_retries``: give up with
    ``ConcurrencySlotAcquisitionError`` after that many waits. The slots are a lease of
    ``lease_duration`` seconds, renewed while held: a process that dies frees them when it
    expires. Limits that do not exist are skipped with a warning (``strict=True``: an error).
    """
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
    grant = acquire_blocking(*request)
    _common.after_acquire(grant, request.names, strict)
    try:
        yield
    finally:
        release_blocking(grant)


def rate_limit(
    names: str | list[str],
    occupy: int = 1,
    timeout_seconds: float | None = None,
    strict: bool = False,
) -> None:
    """Block until ``occupy`` slots of each named limit are free, and take them for good: they
    come back as the limit's ``slot_decay_per_second`` decays them (every named limit must
    have a decay)."""
    request = _common.rate_limit_request(names, occupy, timeout_seconds)
    if request is None:
        return
    _common.after_acquire(acquire_blocking(*request), request.names, strict)


__all__ = [
    "AcquireConcurrencySlotTimeoutError",
    "ConcurrencySlotAcquisitionError",
    "concurrency",
    "rate_limit",
]
