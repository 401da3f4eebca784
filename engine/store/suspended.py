"""Suspended flow runs in the store: re-queued on resume, claimed by whoever continues them."""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any

from millstream._engine.model.records import FlowRun
from millstream._engine.model.states import State
from millstream._engine.store import rows
from millstream._engine.store.backend import Backend
from millstream._engine.store.migrations import Q


class SuspendOperations:
    """Mixed into ``Store`` (``self.backend``); every change is committed when it returns."""

    backend: Backend

    def requeue_suspended(self, run_id: uuid.UUID, state: State) -> bool:
        """Move a Paused run to ``state`` (Scheduled, due now); False if it was not paused."""
        stamp = rows.ts(state.timestamp)
        params = (
            rows.stored_name(state),
            state.message,
            stamp,
            stamp,
            rows.encode_history([rows.history_entry(state, run_id, "flow_run_id")]),
            run_id.bytes,
        )

        def requeue(conn: Any) -> int:
            return int(conn.execute(Q["resume_suspended_flow_run"], params).rowcount)

        return bool(self.backend.transact(requeue))

    def claim_resumed_runs(self, pid: int, hostname: str, at: Any) -> list[FlowRun]:
        """Take every resumed suspended run that no deployment's worker serves."""
        stamp = rows.ts(at)

        def claim(conn: Any) -> list[sqlite3.Row]:
            conn.row_factory = sqlite3.Row
            try:
                found = conn.execute(Q["select_resumed_flow_runs"]).fetchall()
                taken = []
                for row in found:
                    params = (pid, hostname, stamp, stamp, row["id"])
                    claimed = conn.execute(Q["claim_resumed_flow_run"], params).fetchone()
                    if claimed is not None:
                        taken.append(claimed)
                return taken
            finally:
                conn.row_factory = None

        return [rows.flow_run_from_row(r) for r in self.backend.transact(claim)]

    def put_flow_run_input(
        self, run_id: uuid.UUID, key: str, value_json: str, sender: str | None
    ) -> None:
        """Record an input sent to a flow run (committed when it returns)."""
        from millstream._engine.store.limits import now_us

        params = (run_id.bytes, key, value_json, sender, now_us())
        self.backend.transact(lambda conn: conn.execute(Q["insert_flow_run_input"], params))

    def read_flow_run_inputs(
        self, run_id: uuid.UUID, key_prefix: str
    ) -> list[tuple[str, str, str | None]]:
        """``(key, JSON value, sender)`` of the inputs of a run whose keys start with
        ``key_prefix``, oldest first."""
        like = key_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        found = self.backend.point_read_all(Q["select_flow_run_inputs"], (run_id.bytes, like))
        return [(r[0], r[1], r[2]) for r in found]
