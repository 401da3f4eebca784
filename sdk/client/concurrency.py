"""The client's concurrency-limit methods (Prefect's names): global limits and tag limits.

``ConcurrencyClientMixin`` is mixed into ``PrefectClient``; ``SyncConcurrencyClientMixin``
holds the blocking twins, derived from the async methods, for ``SyncPrefectClient``. Every
change is committed before the call returns and wakes this process's waiters.
"""

from __future__ import annotations

import uuid
from typing import Any

from millstream._engine.exceptions import ObjectNotFound
from millstream._engine.limits.slots import wake_waiters
from millstream._engine.model.limits import TAG_PREFIX, LimitRecord
from millstream._engine.store import Store
from millstream.client._twins import blocking as _blocking
from millstream.client.schemas.concurrency import (
    ConcurrencyLimit,
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitResponse,
    GlobalConcurrencyLimitUpdate,
)


def _response(record: LimitRecord) -> GlobalConcurrencyLimitResponse:
    return GlobalConcurrencyLimitResponse(
        id=record.id,
        name=record.name,
        limit=record.limit,
        active=record.active,
        active_slots=record.active_slots,
        slot_decay_per_second=record.slot_decay_per_second,
        created=record.created,
        updated=record.updated,
    )


def _check_tag(tag: str) -> str:
    if not isinstance(tag, str) or not tag:
        raise ValueError(f"tag must be a non-empty string, got {tag!r}")
    return TAG_PREFIX + tag


class ConcurrencyClientMixin:
    """Global and tag-based concurrency limits, read and written in the database."""

    _store: Store

    async def _open(self) -> Store:
        await self._store.ensure_open()
        return self._store

    # -- global limits -------------------------------------------------------------------------
    async def create_global_concurrency_limit(
        self, concurrency_limit: GlobalConcurrencyLimitCreate
    ) -> uuid.UUID:
        """Create a global limit; ``ObjectAlreadyExists`` if its name is taken."""
        store = await self._open()
        c = concurrency_limit
        return store.create_limit(
            c.name, c.limit, c.active, c.slot_decay_per_second, c.active_slots
        )

    async def read_global_concurrency_limit_by_name(
        self, name: str
    ) -> GlobalConcurrencyLimitResponse:
        """A global limit by name; ``ObjectNotFound`` if there is none."""
        store = await self._open()
        found = store.read_limits([name])
        if not found:
            raise ObjectNotFound(f"Concurrency limit {name!r} not found")
        return _response(found[0])

    async def read_global_concurrency_limits(
        self, limit: int = 10, offset: int = 0
    ) -> list[GlobalConcurrencyLimitResponse]:
        """Global limits by name, paged (tag limits included, as ``tag:<tag>``, as in Prefect)."""
        store = await self._open()
        return [_response(r) for r in store.read_limits(limit=limit, offset=offset)]

    async def update_global_concurrency_limit(
        self, name: str, concurrency_limit: GlobalConcurrencyLimitUpdate
    ) -> None:
        """Change the fields of a global limit that are set; ``ObjectNotFound`` if missing."""
        store = await self._open()
        c = concurrency_limit
        store.update_limit(
            name,
            name=c.name,
            limit=c.limit,
            active=c.active,
            active_slots=c.active_slots,
            slot_decay_per_second=c.slot_decay_per_second,
        )
        wake_waiters(store)

    async def delete_global_concurrency_limit_by_name(self, name: str) -> None:
        """Delete a global limit (its holders' slots with it); ``ObjectNotFound`` if missing."""
        store = await self._open()
        store.delete_limit(name)
        wake_waiters(store)

    async def upsert_global_concurrency_limit_by_name(
        self, name: str, limit: int, slot_decay_per_second: float | None = None
    ) -> None:
        """Create the limit, or change its ``limit`` (and decay, if given) when it exists."""
        store = await self._open()
        if not store.read_limits([name]):
            store.create_limit(name, limit, True, slot_decay_per_second or 0.0)
            return
        store.update_limit(name, limit=limit, slot_decay_per_second=slot_decay_per_second)
        wake_waiters(store)

    # -- tag limits (Prefect keeps them as global limits named "tag:<tag>") ----------------------
    async def create_concurrency_limit(self, tag: str, concurrency_limit: int) -> uuid.UUID:
        """Limit task runs tagged ``tag`` to ``concurrency_limit`` at once (an existing limit
        for the tag gets the new value)."""
        if concurrency_limit < 0:
            raise ValueError(f"concurrency_limit must be >= 0, got {concurrency_limit!r}")
        store = await self._open()
        name = _check_tag(tag)
        existing = store.read_limits([name])
        if existing:
            store.update_limit(name, limit=concurrency_limit)
            wake_waiters(store)
            return existing[0].id
        return store.create_limit(name, concurrency_limit, True, 0.0)

    async def read_concurrency_limit_by_tag(self, tag: str) -> ConcurrencyLimit:
        """The limit of a tag with the task runs holding its slots; ``ObjectNotFound``."""
        store = await self._open()
        name = _check_tag(tag)
        found = store.read_limits([name])
        if not found:
            raise ObjectNotFound(f"No concurrency limit for tag {tag!r}")
        return self._tag_limit(store, found[0])

    async def read_concurrency_limits(self, limit: int, offset: int) -> list[ConcurrencyLimit]:
        """Tag limits, by tag, paged."""
        store = await self._open()
        found = store.read_limits(prefix=TAG_PREFIX, limit=limit, offset=offset)
        return [self._tag_limit(store, r) for r in found]

    async def delete_concurrency_limit_by_tag(self, tag: str) -> None:
        """Remove a tag's limit; ``ObjectNotFound`` if it has none."""
        store = await self._open()
        try:
            store.delete_limit(_check_tag(tag))
        except ObjectNotFound:
            raise ObjectNotFound(f"No concurrency limit for tag {tag!r}") from None
        wake_waiters(store)

    async def reset_concurrency_limit_by_tag(
        self, tag: str, slot_override: list[uuid.UUID | str] | None = None
    ) -> None:
        """Free every slot of a tag's limit (running holders keep running without one)."""
        if slot_override:
            from millstream._engine.exceptions import NotSupportedError

            raise NotSupportedError(
                "reset_concurrency_limit_by_tag(slot_override=...): slots are leases taken by "
                "the runs themselves; reset frees them all"
            )
        store = await self._open()
        name = _check_tag(tag)
        if not store.read_limits([name]):
            raise ObjectNotFound(f"No concurrency limit for tag {tag!r}")
        store.reset_limit(name)
        wake_waiters(store)

    @staticmethod
    def _tag_limit(store: Store, record: LimitRecord) -> ConcurrencyLimit:
        holders = store.read_lease_holders([record.name])
        runs = []
        for _, _, _, holder in holders:
            kind, _, ident = (holder or "").partition(":")
            if kind == "task_run":
                runs.append(uuid.UUID(ident))
        return ConcurrencyLimit(
            id=record.id,
            tag=record.name[len(TAG_PREFIX) :],
            concurrency_limit=record.limit,
            active_slots=runs,
            created=record.created,
            updated=record.updated,
        )


class SyncConcurrencyClientMixin:
    """The blocking twins of ``ConcurrencyClientMixin``'s methods."""

    _client: Any

    create_global_concurrency_limit = _blocking(
        ConcurrencyClientMixin.create_global_concurrency_limit
    )
    read_global_concurrency_limit_by_name = _blocking(
        ConcurrencyClientMixin.read_global_concurrency_limit_by_name
    )
    read_global_concurrency_limits = _blocking(
        ConcurrencyClientMixin.read_global_concurrency_limits
    )
    update_global_concurrency_limit = _blocking(
        ConcurrencyClientMixin.update_global_concurrency_limit
    )
    delete_global_concurrency_limit_by_name = _blocking(
        ConcurrencyClientMixin.delete_global_concurrency_limit_by_name
    )
    upsert_global_concurrency_limit_by_name = _blocking(
        ConcurrencyClientMixin.upsert_global_concurrency_limit_by_name
    )
    create_concurrency_limit = _blocking(ConcurrencyClientMixin.create_concurrency_limit)
    read_concurrency_limit_by_tag = _blocking(ConcurrencyClientMixin.read_concurrency_limit_by_tag)
    read_concurrency_limits = _blocking(ConcurrencyClientMixin.read_concurrency_limits)
    delete_concurrency_limit_by_tag = _blocking(
        ConcurrencyClientMixin.delete_concurrency_limit_by_tag
    )
    reset_concurrency_limit_by_tag = _blocking(
        ConcurrencyClientMixin.reset_concurrency_limit_by_tag
    )


__all__ = ["ConcurrencyClientMixin", "SyncConcurrencyClientMixin"]
