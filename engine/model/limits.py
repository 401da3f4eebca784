"""Concurrency and rate limits as data: a limit's record and the pure decision to admit slots."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

import msgspec

Mode = Literal["concurrency", "rate_limit"]

# The names tag limits and deployment limits are kept under (Prefect 3 keeps tag limits as
# global limits named "tag:<tag>" too).
TAG_PREFIX = "tag:"
DEPLOYMENT_PREFIX = "deployment:"


class LimitRecord(msgspec.Struct, kw_only=True):
    """A global concurrency limit as recorded (``active_slots`` as of when it was read)."""

    id: uuid.UUID
    name: str
    limit: int
    active: bool = True
    active_slots: int = 0
    slot_decay_per_second: float = 0.0
    created: dt.datetime | None = None
    updated: dt.datetime | None = None


class Admission(msgspec.Struct, frozen=True):
    """What one attempt to take slots decided: admitted, or how long to wait at least."""

    admitted: bool
    # When not admitted and only decay can free slots: seconds until enough have decayed.
    # None: slots come back only when a holder releases (or its lease expires).
    retry_after: float | None = None
    blocking: str | None = None


def decayed(slots: float, decay_per_second: float, elapsed_seconds: float) -> float:
    """Rate-limit occupancy after ``elapsed_seconds`` of decay."""
    if decay_per_second <= 0:
        return slots
    return max(0.0, slots - decay_per_second * max(0.0, elapsed_seconds))


def admit(occupy: int, limits: list[tuple[str, int, int, float, float]]) -> Admission:
    """Whether ``occupy`` slots fit on every limit, given ``(name, limit, leased slots,
    decayed rate-limit slots, decay per second)`` of each active one; all or none."""
    for name, limit, leased, rated, decay in limits:
        excess = leased + rated + occupy - limit
        if excess <= 1e-9:
            continue
        if decay > 0 and excess <= rated + 1e-9:
            # Decay alone frees enough: the waiter knows exactly when to try again.
            return Admission(False, excess / decay, name)
        return Admission(False, None, name)
    return Admission(True)
