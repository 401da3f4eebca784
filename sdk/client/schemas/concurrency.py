"""Concurrency-limit shapes under Prefect's names: what the client takes and returns."""

from __future__ import annotations

import datetime as dt
import enum
import uuid

import msgspec

from millstream._engine.exceptions import NotSupportedError


def _non_negative(owner: str, **values: float | None) -> None:
    for name, value in values.items():
        if value is not None and value < 0:
            raise ValueError(f"{owner}.{name} must be >= 0, got {value!r}")


class GlobalConcurrencyLimitCreate(msgspec.Struct, kw_only=True):
    """A new global limit: ``limit`` slots, rate-limit decay ``slot_decay_per_second``."""

    name: str
    limit: int
    active: bool = True
    active_slots: int = 0
    slot_decay_per_second: float = 0.0

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("GlobalConcurrencyLimitCreate.name must not be empty")
        _non_negative(
            "GlobalConcurrencyLimitCreate",
            limit=self.limit,
            active_slots=self.active_slots,
            slot_decay_per_second=self.slot_decay_per_second,
        )


class GlobalConcurrencyLimitUpdate(msgspec.Struct, kw_only=True):
    """Changes to a global limit; fields left None stay as they are."""

    name: str | None = None
    limit: int | None = None
    active: bool | None = None
    active_slots: int | None = None
    slot_decay_per_second: float | None = None

    def __post_init__(self) -> None:
        _non_negative(
            "GlobalConcurrencyLimitUpdate",
            limit=self.limit,
            active_slots=self.active_slots,
            slot_decay_per_second=self.slot_decay_per_second,
        )


class GlobalConcurrencyLimitResponse(msgspec.Struct, kw_only=True):
    """A global limit as read: ``active_slots`` are the slots held now (live leases and
    rate-limit slots not yet decayed)."""

    id: uuid.UUID
    name: str
    limit: int
    active: bool = True
    active_slots: int = 0
    slot_decay_per_second: float = 0.0
    created: dt.datetime | None = None
    updated: dt.datetime | None = None


# Prefect's objects.GlobalConcurrencyLimit has the same fields.
GlobalConcurrencyLimit = GlobalConcurrencyLimitResponse


class ConcurrencyLimitCreate(msgspec.Struct, kw_only=True):
    """A tag-based task-run limit: at most ``concurrency_limit`` runs tagged ``tag`` at once."""

    tag: str
    concurrency_limit: int


class ConcurrencyLimit(msgspec.Struct, kw_only=True):
    """A tag-based task-run limit as read; ``active_slots``: the task runs holding a slot."""

    id: uuid.UUID
    tag: str
    concurrency_limit: int
    active_slots: list[uuid.UUID] = msgspec.field(default_factory=list)
    created: dt.datetime | None = None
    updated: dt.datetime | None = None


class ConcurrencyLimitStrategy(enum.StrEnum):
    """What a deployment does with a run due when its limit is full."""

    ENQUEUE = "ENQUEUE"
    CANCEL_NEW = "CANCEL_NEW"


class ConcurrencyLimitConfig(msgspec.Struct, kw_only=True):
    """A deployment's concurrency limit (``to_deployment(concurrency_limit=...)``): ``ENQUEUE``
    keeps a run that finds the limit full Scheduled until a slot frees; ``CANCEL_NEW`` cancels
    it."""

    limit: int
    collision_strategy: ConcurrencyLimitStrategy = ConcurrencyLimitStrategy.ENQUEUE
    grace_period_seconds: int | None = None

    def __post_init__(self) -> None:
        try:
            self.collision_strategy = ConcurrencyLimitStrategy(self.collision_strategy)
        except ValueError:
            raise ValueError(
                "ConcurrencyLimitConfig.collision_strategy must be ENQUEUE or CANCEL_NEW, got "
                f"{self.collision_strategy!r}"
            ) from None
        if self.grace_period_seconds is not None:
            raise NotSupportedError(
                "ConcurrencyLimitConfig(grace_period_seconds=...): it is the time a work pool's "
                "infrastructure may take to start; served runs start in the worker's process"
            )
        if self.limit < 1:
            raise ValueError(f"ConcurrencyLimitConfig.limit must be >= 1, got {self.limit!r}")


__all__ = [
    "ConcurrencyLimit",
    "ConcurrencyLimitConfig",
    "ConcurrencyLimitCreate",
    "ConcurrencyLimitStrategy",
    "GlobalConcurrencyLimit",
    "GlobalConcurrencyLimitCreate",
    "GlobalConcurrencyLimitResponse",
    "GlobalConcurrencyLimitUpdate",
]
