"""Concurrency limits and their leases in the database: synchronous transactions, not
write-behind, because every process sharing the file must see a slot taken the moment it is.

Each operation is one ``BEGIN IMMEDIATE`` transaction on the calling thread's own connection
(``Backend.transact``): SQLite serialises writers, so "count the holders, then add one" is
atomic across threads and processes (and PostgreSQL's backend does the same with a row lock).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from millstream._engine.exceptions import ObjectAlreadyExists, ObjectNotFound
from millstream._engine.model.limits import Admission, LimitRecord, Mode, admit, decayed
from millstream._engine.store import rows
from millstream._engine.store.backend import Backend
from millstream._engine.store.migrations import Q, expand

_ADMITTED = Admission(True)


def now_us() -> int:
    """The time as the limit tables keep it: integer microseconds since the epoch."""
    return time.time_ns() // 1000


class Unusable(Exception):
    """A request that can never be admitted (too many slots, rate limit without decay)."""


def _limits(conn: Any, names: list[str]) -> list[tuple[Any, ...]]:
    return list(conn.execute(_sql("select_concurrency_limits_named", len(names)), names))


def _limits_with_leased(conn: Any, names: list[str], now: int) -> list[tuple[Any, ...]]:
    # Counts live leases only: a dead holder's expired lease is simply not counted.
    sql = _sql("select_concurrency_limits_with_leased", len(names))
    return list(conn.execute(sql, (now, *names)))


_expanded: dict[tuple[str, int], str] = {}


def _sql(name: str, count: int) -> str:
    sql = _expanded.get((name, count))
    if sql is None:
        sql = _expanded[(name, count)] = expand(name, count)
    return sql


def _record(row: tuple[Any, ...], now: int) -> LimitRecord:
    name, id_, limit, active, decay, rated, stamp, created, updated, leased = row
    slots = leased + decayed(rated, decay, (now - stamp) / 1e6)
    return LimitRecord(
        id=uuid.UUID(bytes=id_),
        name=name,
        limit=limit,
        active=bool(active),
        # Prefect reports whole slots; a partly decayed one still counts.
        active_slots=int(-(-slots // 1)),
        slot_decay_per_second=decay,
        created=rows.parse_ts(created),
        updated=rows.parse_ts(updated),
    )


class LimitOperations:
    """The limit tables' typed operations, mixed into ``Store`` (``self.backend``)."""

    backend: Backend

    def _transact(self, fn: Any) -> Any:
        return self.backend.transact(fn)

    # -- administration ------------------------------------------------------------------------
    def create_limit(
        self, name: str, limit: int, active: bool, decay: float, active_slots: int = 0
    ) -> uuid.UUID:
        """Create a limit; ``ObjectAlreadyExists`` if one has this name."""
        limit_id = uuid.uuid4()
        stamp = now_us()
        params = (
            name,
            limit_id.bytes,
            limit,
            int(active),
            decay,
            active_slots,
            stamp,
            stamp,
            stamp,
        )

        def create(conn: Any) -> int:
            return int(conn.execute(Q["insert_concurrency_limit"], params).rowcount)

        if not self._transact(create):
            raise ObjectAlreadyExists(f"Concurrency limit {name!r} already exists")
        return limit_id

    def read_limits(
        self, names: list[str] | None = None, *, prefix: str = "", limit: int = -1, offset: int = 0
    ) -> list[LimitRecord]:
        """Limits by name (those of ``names`` that exist), or all whose names start with
        ``prefix``, by name; ``active_slots`` counts live leases and undecayed slots."""

        def read(conn: Any) -> list[LimitRecord]:
            if names is None:
                like = prefix.replace("%", r"\%").replace("_", r"\_") + "%"
                page = conn.execute(Q["select_concurrency_limits"], (like, limit, offset))
                names_ = [r[0] for r in page]
            else:
                names_ = names
            if not names_:
                return []
            now = now_us()
            conn.execute(_sql("delete_expired_concurrency_leases", len(names_)), (*names_, now))
            found = sorted(_limits_with_leased(conn, names_, now), key=lambda r: str(r[0]))
            return [_record(r, now) for r in found]

        records: list[LimitRecord] = self._transact(read)
        return records

    def update_limit(self, limit_name: str, /, **changes: Any) -> None:
        """Change a limit's ``name``, ``limit``, ``active``, ``active_slots`` or
        ``slot_decay_per_second``; ``ObjectNotFound`` if there is none called ``name``."""

        name = limit_name

        def update(conn: Any) -> None:
            found = _limits(conn, [name])
            if not found:
                raise ObjectNotFound(f"Concurrency limit {name!r} not found")
            _, _, limit, active, decay, rated, stamp, _, _ = found[0]
            now = now_us()
            rated = decayed(rated, decay, (now - stamp) / 1e6)
            if changes.get("active_slots") is not None:
                # Prefect's "set active slots": the leases stay, the rest is decaying occupancy.
                rated = float(changes["active_slots"])
            new_name = changes.get("name") or name
            params = (
                new_name,
                changes.get("limit", limit) if changes.get("limit") is not None else limit,
                int(changes["active"]) if changes.get("active") is not None else active,
                decay
                if changes.get("slot_decay_per_second") is None
                else changes["slot_decay_per_second"],
                rated,
                now,
                now,
                name,
            )
            conn.execute(Q["update_concurrency_limit"], params)
            if new_name != name:
                conn.execute(Q["rename_concurrency_leases"], (new_name, name))

        self._transact(update)

    def delete_limit(self, name: str) -> None:
        """Delete a limit and its leases; ``ObjectNotFound`` if there is none."""

        def delete(conn: Any) -> int:
            conn.execute(Q["delete_concurrency_leases_of_limit"], (name,))
            return int(conn.execute(Q["delete_concurrency_limit"], (name,)).rowcount)

        if not self._transact(delete):
            raise ObjectNotFound(f"Concurrency limit {name!r} not found")

    def reset_limit(self, name: str) -> None:
        """Free every slot of a limit: its leases and its undecayed rate-limit slots."""
        stamp = now_us()

        def reset(conn: Any) -> None:
            conn.execute(Q["delete_concurrency_leases_of_limit"], (name,))
            conn.execute(Q["update_decayed_slots"], (0.0, stamp, name))

        self._transact(reset)

    def read_lease_holders(self, names: list[str]) -> list[tuple[str, uuid.UUID, int, str | None]]:
        """``(limit name, lease id, slots, holder)`` of every live lease on these limits."""
        if not names:
            return []
        sql = expand("select_lease_holders", len(names))

        def read(conn: Any) -> list[tuple[str, uuid.UUID, int, str | None]]:
            found = conn.execute(sql, (*names, now_us()))
            return [(n, uuid.UUID(bytes=i), s, h) for n, i, s, _, h in found]

        holders: list[tuple[str, uuid.UUID, int, str | None]] = self._transact(read)
        return holders

    def existing_limits(self, names: list[str]) -> list[str]:
        """Those of ``names`` that are active limits, read without taking the write lock (the
        hot path of a tagged task run asks this before it tries to take a slot)."""
        sql = _sql("select_concurrency_limits_named", len(names))
        return [r[0] for r in self.backend.point_read_all(sql, tuple(names)) if r[3]]

    # -- slots ---------------------------------------------------------------------------------
    def try_acquire_slots(
        self,
        names: list[str],
        occupy: int,
        mode: Mode,
        lease_id: uuid.UUID,
        lease_seconds: float,
        holder: str | None,
    ) -> tuple[list[str], Admission]:
        """One attempt to take ``occupy`` slots of every active limit in ``names`` (all or
        none): ``(names of the limits that exist, the admission)``. ``Unusable`` when it
        could never be admitted."""

        if len(names) == 1 and mode == "concurrency":
            # The uncontended case: one statement, atomic on its own (no BEGIN ... COMMIT).
            now = now_us()
            expires = now + int(lease_seconds * 1e6)
            params = (lease_id.bytes, occupy, expires, holder, names[0], occupy, names[0], now)
            if self.backend.execute_once("insert_concurrency_lease_if_free", params):
                return names, _ADMITTED

        def attempt(conn: Any) -> tuple[list[str], Admission]:
            now = now_us()
            found = _limits_with_leased(conn, names, now)
            if not found:
                return [], Admission(True)
            active = [r for r in found if r[3]]
            _check_usable(active, occupy, mode)
            rated = {r[0]: decayed(r[5], r[4], (now - r[6]) / 1e6) for r in active}
            outcome = admit(occupy, [(r[0], r[2], r[9], rated[r[0]], r[4]) for r in active])
            if outcome.admitted:
                _take(conn, active, rated, occupy, mode, lease_id, now, lease_seconds, holder)
            elif outcome.retry_after is None:
                # Blocked by leases: tidy the expired ones (dead holders) while here.
                conn.execute(_sql("delete_expired_concurrency_leases", len(names)), (*names, now))
            return [r[0] for r in found], outcome

        result: tuple[list[str], Admission] = self._transact(attempt)
        return result

    def release_lease(self, lease_id: uuid.UUID, names: list[str]) -> bool:
        """Give a lease's slots on ``names`` back; False if it was gone already (expired and
        taken)."""
        params = (*names, lease_id.bytes)
        if len(names) == 1:
            deleted = self.backend.execute_once("delete_concurrency_lease_of", params)
            if deleted is not None:
                return bool(deleted)
        sql = _sql("delete_concurrency_lease", len(names))

        def release(conn: Any) -> int:
            return int(conn.execute(sql, params).rowcount)

        return bool(self._transact(release))

    def renew_leases(self, expiries: list[tuple[uuid.UUID, float]]) -> list[uuid.UUID]:
        """Push each lease's expiry ``seconds`` from now; the ids of those that were gone."""
        now = now_us()

        def renew(conn: Any) -> list[uuid.UUID]:
            lost = []
            for lease_id, seconds in expiries:
                params = (now + int(seconds * 1e6), lease_id.bytes)
                if not conn.execute(Q["renew_concurrency_lease"], params).rowcount:
                    lost.append(lease_id)
            return lost

        gone: list[uuid.UUID] = self._transact(renew)
        return gone


def _check_usable(active: list[tuple[Any, ...]], occupy: int, mode: Mode) -> None:
    too_small = [r[0] for r in active if r[2] < occupy]
    if too_small:
        raise Unusable(
            f"Slots requested ({occupy}) is greater than the limit of {', '.join(too_small)}"
        )
    if mode == "rate_limit":
        still = [r[0] for r in active if r[4] == 0]
        if still:
            raise Unusable(
                "Only concurrency limits with slot decay can be used for rate limiting. The "
                f"following limits do not have a decay configured: {','.join(still)!r}"
            )


def _take(
    conn: Any,
    active: list[tuple[Any, ...]],
    rated: dict[str, float],
    occupy: int,
    mode: Mode,
    lease_id: uuid.UUID,
    now: int,
    lease_seconds: float,
    holder: str | None,
) -> None:
    if mode == "rate_limit":
        # Rate-limit slots are never released: they decay.
        conn.executemany(
            Q["update_decayed_slots"], [(rated[r[0]] + occupy, now, r[0]) for r in active]
        )
        return
    expires = now + int(lease_seconds * 1e6)
    for r in active:
        conn.execute(Q["insert_concurrency_lease"], (lease_id.bytes, r[0], occupy, expires, holder))
