"""Taking and giving back slots of global limits: from a thread (blocking) or a loop (async)."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator

from millstream._engine.exceptions import (
    AcquireConcurrencySlotTimeoutError,
    ConcurrencySlotAcquisitionError,
)
from millstream._engine.limits.leases import renewer
from millstream._engine.limits.waiters import Notifier, notifier_for
from millstream._engine.model.limits import Admission, Mode
from millstream._engine.settings import get_current_settings
from millstream._engine.store import Store
from millstream._engine.store.limits import Unusable

_HOLDER = f"{socket.gethostname()}:{os.getpid()}"


class Grant:
    """Slots held on limits (``names``: those that exist); ``release`` gives them back."""

    __slots__ = ("lease_id", "mode", "names", "occupy", "store")

    def __init__(
        self, store: Store, lease_id: uuid.UUID, names: list[str], occupy: int, mode: Mode
    ) -> None:
        self.store = store
        self.lease_id = lease_id
        self.names = names
        self.occupy = occupy
        self.mode = mode


class _Attempts:
    """The state of one acquisition across its attempts: deadline, retries, what to wait."""

    def __init__(
        self,
        store: Store,
        names: list[str],
        occupy: int,
        mode: Mode,
        timeout: float | None,
        max_retries: int | None,
        lease_seconds: float | None,
        holder: str | None,
        poll_seconds: float | None,
    ) -> None:
        if occupy < 1:
            raise ValueError(f"occupy must be at least 1, got {occupy!r}")
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout_seconds must be >= 0, got {timeout!r}")
        if lease_seconds is None or poll_seconds is None:
            limits = get_current_settings().limits
            lease_seconds = limits.lease_seconds if lease_seconds is None else lease_seconds
            poll_seconds = limits.poll_seconds if poll_seconds is None else poll_seconds
        if lease_seconds <= 0:
            raise ValueError(f"lease_duration must be positive, got {lease_seconds!r}")
        self.store = store
        self.names = list(dict.fromkeys(names))
        self.occupy = occupy
        self.mode = mode
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.retries_left = max_retries
        self.lease_seconds = lease_seconds
        self.poll = poll_seconds
        self.holder = holder or _HOLDER
        self.lease_id = uuid.uuid4()
        self.notifier: Notifier = notifier_for(store.path)
        self.grant: Grant | None = None

    def waits(self) -> Iterator[tuple[int, float]]:
        """Attempt until admitted (the grant is then ``self.grant``), yielding between attempts
        the notifier generation and the seconds to wait on it (blocking or awaited)."""
        while True:
            generation = self.notifier.generation()
            grant, wait = self.attempt()
            if grant is not None:
                self.grant = grant
                return
            assert wait is not None
            yield generation, wait

    def attempt(self) -> tuple[Grant | None, float | None]:
        """``(grant, None)`` when admitted; else ``(None, seconds to wait at most)``."""
        try:
            found, admission = self.store.try_acquire_slots(
                self.names, self.occupy, self.mode, self.lease_id, self.lease_seconds, self.holder
            )
        except Unusable as exc:
            raise ConcurrencySlotAcquisitionError(
                f"Unable to acquire concurrency slots on {self.names!r}: {exc}"
            ) from None
        if admission.admitted:
            grant = Grant(self.store, self.lease_id, found, self.occupy, self.mode)
            if found and self.mode == "concurrency":
                renewer.hold(self.store, self.lease_id, self.lease_seconds)
            return grant, None
        return None, self._wait_for(admission)

    def _wait_for(self, admission: Admission) -> float:
        if self.retries_left is not None:
            if self.retries_left <= 0:
                raise ConcurrencySlotAcquisitionError(
                    f"Unable to acquire concurrency slots on {self.names!r}: the limit "
                    f"{admission.blocking!r} stayed full through max_retries"
                )
            self.retries_left -= 1
        # Another process's release is seen at the next poll; this process's at once.
        wait = self.poll if admission.retry_after is None else admission.retry_after
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise AcquireConcurrencySlotTimeoutError(
                    f"Attempt to acquire concurrency slots timed out after {self.timeout} second(s)"
                )
            wait = min(wait, left)
        return wait


def acquire_blocking(
    store: Store,
    names: list[str],
    occupy: int = 1,
    mode: Mode = "concurrency",
    timeout: float | None = None,
    max_retries: int | None = None,
    lease_seconds: float | None = None,
    holder: str | None = None,
    poll_seconds: float | None = None,
) -> Grant:
    """Take ``occupy`` slots of every limit in ``names``, blocking this thread until they are
    free; ``grant.names`` is empty when none of the limits exist."""
    store.ensure_open_sync()
    attempts = _Attempts(
        store, names, occupy, mode, timeout, max_retries, lease_seconds, holder, poll_seconds
    )
    for generation, wait in attempts.waits():
        attempts.notifier.wait(generation, wait)
    assert attempts.grant is not None
    return attempts.grant


async def acquire(
    store: Store,
    names: list[str],
    occupy: int = 1,
    mode: Mode = "concurrency",
    timeout: float | None = None,
    max_retries: int | None = None,
    lease_seconds: float | None = None,
    holder: str | None = None,
    poll_seconds: float | None = None,
) -> Grant:
    """``acquire_blocking`` on the running loop (each attempt is one short transaction)."""
    await store.ensure_open()
    attempts = _Attempts(
        store, names, occupy, mode, timeout, max_retries, lease_seconds, holder, poll_seconds
    )
    for generation, wait in attempts.waits():
        await attempts.notifier.wait_async(generation, wait)
    assert attempts.grant is not None
    return attempts.grant


def release_blocking(grant: Grant) -> None:
    """Give the slots back and wake this process's waiters (rate-limit slots only decay)."""
    if grant.mode != "concurrency" or not grant.names:
        return
    renewer.drop(grant.lease_id)
    grant.store.release_lease(grant.lease_id, grant.names)
    notifier_for(grant.store.path).notify()


async def release(grant: Grant) -> None:
    """``release_blocking`` from a loop."""
    release_blocking(grant)


def wake_waiters(store: Store) -> None:
    """Wake this process's waiters on ``store`` (a limit was changed or deleted)."""
    notifier_for(store.path).notify()
