"""What the sync and async faces share: argument checks, the store, the missing-limit rule."""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

from millstream._engine.exceptions import ConcurrencySlotAcquisitionError, NotSupportedError
from millstream._engine.limits import Grant
from millstream._engine.model.limits import Mode
from millstream._engine.settings import get_current_settings
from millstream._engine.store import Store, get_store

logger = logging.getLogger("millstream.concurrency")


def store() -> tuple[Store, float]:
    """The current database's store and how often its waiters poll other processes."""
    settings = get_current_settings()
    return get_store(settings.database_path), settings.limits.poll_seconds


class Acquisition(NamedTuple):
    """The arguments of the engine's ``acquire`` / ``acquire_blocking``, in their order."""

    store: Store
    names: list[str]
    occupy: int
    mode: Mode
    timeout: float | None
    max_retries: int | None = None
    lease_seconds: float | None = None
    holder: str | None = None
    poll_seconds: float | None = None


def concurrency_request(
    names: str | list[str],
    occupy: int,
    timeout_seconds: float | None,
    max_retries: int | None,
    lease_duration: float,
    holder: Any,
    raise_on_lease_renewal_failure: bool | None,
) -> Acquisition | None:
    """What ``concurrency(...)`` asks the engine for (both faces); None: no names, no slots."""
    listed = names_of(names)
    check_renewal_option(raise_on_lease_renewal_failure)
    if not listed:
        return None
    the_store, poll = store()
    return Acquisition(
        the_store,
        listed,
        occupy,
        "concurrency",
        timeout_seconds,
        max_retries,
        lease_duration,
        holder_text(holder),
        poll,
    )


def rate_limit_request(
    names: str | list[str], occupy: int, timeout_seconds: float | None
) -> Acquisition | None:
    """What ``rate_limit(...)`` asks the engine for (both faces); None: no names."""
    listed = names_of(names)
    if not listed:
        return None
    the_store, poll = store()
    return Acquisition(the_store, listed, occupy, "rate_limit", timeout_seconds, poll_seconds=poll)


def names_of(names: str | list[str]) -> list[str]:
    """``names`` as a list (Prefect accepts one name or a list)."""
    if isinstance(names, str):
        return [names]
    if not all(isinstance(n, str) for n in names):
        raise TypeError(f"names must be a string or a list of strings, got {names!r}")
    return list(names)


def holder_text(holder: Any) -> str | None:
    """A lease holder as recorded: Prefect's ``{"type": ..., "id": ...}`` as ``type:id``."""
    if holder is None:
        return None
    if isinstance(holder, dict):
        return f"{holder.get('type')}:{holder.get('id')}"
    kind, ident = getattr(holder, "type", None), getattr(holder, "id", None)
    return f"{kind}:{ident}" if kind is not None else str(holder)


def check_renewal_option(raise_on_lease_renewal_failure: bool | None) -> None:
    """``raise_on_lease_renewal_failure=True`` would need to interrupt the body: refused."""
    if raise_on_lease_renewal_failure:
        raise NotSupportedError(
            "concurrency(raise_on_lease_renewal_failure=True): Millstream never interrupts a "
            "running body; a lease that could not be renewed is logged as a warning"
        )


def after_acquire(grant: Grant, names: list[str], strict: bool) -> None:
    """Prefect's rule for limits that do not exist: an error if ``strict``, else a warning
    and the body runs without a slot."""
    if grant.names:
        return
    if strict:
        raise ConcurrencySlotAcquisitionError(
            f"Concurrency limits {names!r} must be created before acquiring slots"
        )
    message = f"Concurrency limits {names!r} do not exist - skipping acquisition."
    try:
        from millstream._engine.logs import get_run_logger

        get_run_logger().warning(message)
    except Exception:
        logger.warning(message)
