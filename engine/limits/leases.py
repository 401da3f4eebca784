"""Keeping held leases alive: one daemon thread per process renews every lease it holds."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from millstream._engine.store import Store

logger = logging.getLogger("millstream.concurrency")

# With no lease shorter than Prefect's default (300 s) held, the thread wakes this often.
_IDLE = 100.0


class Renewer:
    """Renews each registered lease a third of its duration before it would expire."""

    def __init__(self) -> None:
        self._leases: dict[uuid.UUID, tuple[Store, float]] = {}
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._thread: threading.Thread | None = None
        # The interval the thread waits with now (idle: a third of the longest usual lease).
        self._planned = _IDLE

    def hold(self, store: Store, lease_id: uuid.UUID, seconds: float) -> None:
        """Renew ``lease_id`` every ``seconds / 3`` until ``drop``."""
        with self._lock:
            # Wake the thread only when its next renewal must come sooner than it plans.
            sooner = seconds / 3 < self._planned
            self._leases[lease_id] = (store, seconds)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._main, name="millstream-leases", daemon=True
                )
                self._thread.start()
        if sooner:
            self._changed.set()

    def drop(self, lease_id: uuid.UUID) -> None:
        """Stop renewing ``lease_id`` (it was released)."""
        with self._lock:
            self._leases.pop(lease_id, None)

    def _interval(self) -> float:
        with self._lock:
            shortest = min((s for _, s in self._leases.values()), default=_IDLE * 3)
            self._planned = max(0.01, min(shortest, _IDLE * 3) / 3)
            return self._planned

    def _main(self) -> None:
        next_at: float | None = None
        while True:
            interval = self._interval()
            now = time.monotonic()
            if next_at is None or next_at > now + interval:
                next_at = now + interval
            if self._changed.wait(max(0.0, next_at - now)):
                # A lease came or went: only the interval may have changed.
                self._changed.clear()
                continue
            next_at = None
            try:
                self._renew_all()
            except Exception:  # a locked or vanished file: tried again next round
                logger.debug("Renewing concurrency leases failed", exc_info=True)

    def _renew_all(self) -> None:
        with self._lock:
            by_store: dict[int, tuple[Store, list[tuple[uuid.UUID, float]]]] = {}
            for lease_id, (store, seconds) in self._leases.items():
                by_store.setdefault(id(store), (store, []))[1].append((lease_id, seconds))
        for store, expiries in by_store.values():
            for lost in store.renew_leases(expiries):
                # Another process took the slots of a lease that expired: say so, once.
                logger.warning(
                    "Concurrency lease %s expired before it could be renewed; its slots may "
                    "be held by another run now",
                    lost,
                )
                self.drop(lost)


renewer = Renewer()
