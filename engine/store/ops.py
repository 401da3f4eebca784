"""The store's typed operations beyond run records: client reads, variables, deployments,
claims and state changes from outside a run. Each is a named statement of ``schema.sql``
(or a query of ``reads``) run through the writer or a read connection."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import sqlite3
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec

from millstream._engine.model.records import FlowRecord, FlowRun, LogRecord, TaskRun
from millstream._engine.model.states import State, StateType
from millstream._engine.store import reads, rows
from millstream._engine.store.migrations import Q, expand


class StoreOperations:
    """Typed operations, mixed into ``Store`` (which provides the primitives below)."""

    path: Path

    def put_call(self, fn: Callable[[Any], Any]) -> concurrent.futures.Future[Any]:
        raise NotImplementedError

    async def fetchall_sql(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        raise NotImplementedError

    async def _call(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        return await asyncio.wrap_future(self.put_call(fn))

    async def _rows(self, name: str, *params: Any) -> list[sqlite3.Row]:
        return await self.fetchall_sql(Q[name], params)

    # -- client reads --------------------------------------------------------------------------
    async def ping(self) -> None:
        """Open the database and run a trivial query."""
        await self._rows("ping")

    async def read_flow_runs(self, **filters: Any) -> list[FlowRun]:
        """Flow runs matching Prefect-style filters, sort and paging (see ``reads.flow_runs``)."""
        found = await self.fetchall_sql(*reads.flow_runs(**filters))
        return [rows.flow_run_from_row(r) for r in found]

    async def count_flow_runs(self, **filters: Any) -> int:
        """How many flow runs match the filters."""
        count: int = (await self.fetchall_sql(*reads.count_flow_runs(**filters)))[0][0]
        return count

    async def read_task_runs(self, **filters: Any) -> list[TaskRun]:
        """Task runs matching the filters (see ``reads.task_runs``)."""
        found = await self.fetchall_sql(*reads.task_runs(**filters))
        return [rows.task_run_from_row(r) for r in found]

    async def read_flows(self, **filters: Any) -> list[FlowRecord]:
        """Flows matching the filters (see ``reads.flows``)."""
        return [rows.flow_from_row(r) for r in await self.fetchall_sql(*reads.flows(**filters))]

    async def read_logs(self, **filters: Any) -> list[LogRecord]:
        """Log lines matching the filter (see ``reads.logs``)."""
        return [rows.log_from_row(r) for r in await self.fetchall_sql(*reads.logs(**filters))]

    async def read_flow(self, flow_id: uuid.UUID | str) -> FlowRecord | None:
        """The flow with this id, or None."""
        found = await self._rows("select_flow", rows.db_id(flow_id))
        return rows.flow_from_row(found[0]) if found else None

    async def read_flow_by_name(self, flow_name: str) -> FlowRecord | None:
        """The flow with this name, or None."""
        found = await self._rows("select_flow_by_name", flow_name)
        return rows.flow_from_row(found[0]) if found else None

    async def newest_flow_run_id(self, flow_name: str) -> uuid.UUID | None:
        """The id of the newest run of a flow, or None."""
        found = await self._rows("select_newest_flow_run_of_flow", flow_name)
        return rows.parse_id(found[0][0]) if found else None

    async def read_flow_run_lineage(
        self, flow_run_id: uuid.UUID
    ) -> tuple[uuid.UUID | None, uuid.UUID | None, dict[str, Any]] | None:
        """``(deployment id, parent flow run id, parameters)`` of a recorded flow run."""
        found = await self._rows("select_flow_run_lineage", rows.db_id(flow_run_id))
        if not found:
            return None
        deployment_id, parent_id, parameters = found[0]
        return (
            rows.parse_id(deployment_id),
            rows.parse_id(parent_id),
            msgspec.json.decode(parameters),
        )

    async def delete_flow_run(self, flow_run_id: uuid.UUID | str) -> bool:
        """Delete a flow run with its task runs and log lines (all or none); False if there is
        no such run."""
        run_id = rows.db_id(flow_run_id)

        def delete(conn: sqlite3.Connection) -> bool:
            if not conn.execute(Q["delete_flow_run"], (run_id,)).rowcount:
                return False
            conn.execute(Q["delete_task_runs_of_flow_run"], (run_id,))
            conn.execute(Q["delete_logs_of_flow_run"], (run_id,))
            conn.execute(Q["delete_artifacts_of_flow_run"], (run_id,))
            return True

        deleted: bool = await self._call(delete)
        return deleted

    # -- variables -----------------------------------------------------------------------------
    async def write_variable(
        self, name: str, value_json: str, tags: list[str], *, overwrite: bool
    ) -> bool:
        """Store a variable's JSON value; False when it exists and ``overwrite`` is not set.

        One statement in the writer's transaction: "exists?" and the write are atomic, even
        against other processes sharing the file."""
        stamp = rows.ts(dt.datetime.now(dt.UTC))
        params = (name, value_json, rows.encode_json(tags), stamp, stamp)
        sql = Q["upsert_variable" if overwrite else "insert_variable"]
        written: int = await self._call(lambda conn: conn.execute(sql, params).rowcount)
        return bool(written)

    async def read_variable(self, name: str) -> tuple[str, Any, list[str]] | None:
        """``(name, value, tags)`` of a variable, or None."""
        found = await self._rows("select_variable", name)
        return rows.variable_fields(found[0]) if found else None

    async def read_variables(self, limit: int | None = None) -> list[tuple[str, Any, list[str]]]:
        """Every variable as ``(name, value, tags)``, by name."""
        return [
            rows.variable_fields(r) for r in await self.fetchall_sql(*reads.variables(limit=limit))
        ]

    async def delete_variable(self, name: str) -> bool:
        """Delete a variable; True if there was one."""
        sql = Q["delete_variable"]
        deleted: int = await self._call(lambda conn: conn.execute(sql, (name,)).rowcount)
        return bool(deleted)

    # -- deployments ---------------------------------------------------------------------------
    async def upsert_deployment(
        self, fields: dict[str, Any], schedules_json: str, parameters_blob: bytes | None
    ) -> None:
        """Create or update a deployment from its record's fields (``schedules`` as JSON)."""
        stamp = rows.ts(dt.datetime.now(dt.UTC))
        schema = fields.get("parameter_schema")
        params = (
            fields["id"].bytes,
            fields["name"],
            fields["flow_name"],
            fields.get("entrypoint"),
            fields.get("description"),
            fields.get("version"),
            rows.encode_json(fields.get("tags") or []),
            rows.encode_json(fields.get("parameters") or {}),
            parameters_blob,
            rows.encode_json(schema) if schema else None,
            int(bool(fields.get("enforce_parameter_schema"))),
            int(bool(fields.get("paused"))),
            schedules_json,
            stamp,
            stamp,
            fields.get("concurrency_limit"),
            fields.get("collision_strategy"),
        )
        sql = Q["upsert_deployment"]
        await self._call(lambda conn: conn.execute(sql, params))

    async def read_deployment(
        self,
        deployment_id: uuid.UUID | str | None = None,
        *,
        full_name: tuple[str, str] | None = None,
    ) -> dict[str, Any] | None:
        """A deployment's fields (see ``rows.deployment_fields``) by id or by (flow, name)."""
        if full_name is not None:
            found = await self._rows("select_deployment_by_name", *full_name)
        else:
            found = await self._rows("select_deployment", rows.db_id(deployment_id))
        return rows.deployment_fields(found[0]) if found else None

    async def read_deployments(
        self, limit: int | None = None, offset: int = 0
    ) -> list[dict[str, Any]]:
        """Every deployment's fields, by flow and name."""
        found = await self._rows("select_deployments", -1 if limit is None else limit, offset)
        return [rows.deployment_fields(r) for r in found]

    async def set_deployments_paused(self, deployment_ids: list[uuid.UUID], paused: bool) -> None:
        """Pause or resume the schedules of deployments."""
        params = [(int(paused), i.bytes) for i in deployment_ids]
        sql = Q["update_deployment_paused"]
        await self._call(lambda conn: conn.executemany(sql, params))

    async def insert_scheduled_flow_run(self, run: FlowRun, state: State) -> None:
        """Record a new flow run in ``state`` unless a run with its id (or idempotency key)
        exists; durable when it returns."""
        history = rows.encode_history([rows.history_entry(state, run.id, "flow_run_id")])
        row = rows.flow_run_row(run, state, history, None)
        sql = Q["insert_scheduled_flow_run"]
        await self._call(lambda conn: conn.execute(sql, row))

    async def claim_new_flow_run(self, run: FlowRun, state: State) -> bool:
        """Record a new flow run with a caller-given id in ``state`` unless that id exists
        (one atomic insert, durable when it returns): True if this call made it. The row's
        history starts empty; the run's own first write records ``state`` in it."""
        from millstream._engine.store.core import check_flow_run

        check_flow_run(run)
        row = rows.flow_run_row(run, state, b"", None)
        sql = Q["claim_new_flow_run"]
        won: bool = await self._call(lambda conn: conn.execute(sql, row).fetchone() is not None)
        return won

    async def claim_due_flow_run(
        self, deployment_ids: list[uuid.UUID], pid: int, hostname: str, at: dt.datetime
    ) -> FlowRun | None:
        """Take the oldest Scheduled run of these deployments due at ``at`` for the process
        ``pid`` on ``hostname`` (one conditional UPDATE … RETURNING), or None."""
        stamp = rows.ts(at)
        params = (pid, hostname, stamp, stamp, *rows.encode_ids(deployment_ids), stamp)
        sql = expand("claim_due_flow_run", len(deployment_ids))

        def claim(conn: sqlite3.Connection) -> sqlite3.Row | None:
            conn.row_factory = sqlite3.Row
            try:
                row: sqlite3.Row | None = conn.execute(sql, params).fetchone()
            finally:
                conn.row_factory = None
            return row

        row = await self._call(claim)
        return rows.flow_run_from_row(row) if row is not None else None

    # -- recovery and control ------------------------------------------------------------------
    async def read_recoverable_flow_runs(self) -> list[FlowRun]:
        """Top-level flow runs not final (Pending or Running), oldest first."""
        return [rows.flow_run_from_row(r) for r in await self._rows("select_recoverable_flow_runs")]

    async def claim_flow_run(
        self, run: FlowRun, pid: int, hostname: str, heartbeat: dt.datetime
    ) -> int | None:
        """Take ownership of a run if its owner fields are still what ``run`` says: the lease
        epoch now held (raised by the claim), or None if someone else changed it first."""
        params = (
            pid,
            hostname,
            rows.ts(heartbeat),
            rows.db_id(run.id),
            run.pid,
            run.hostname,
            rows.ts(run.heartbeat),
        )
        sql = Q["claim_flow_run"]

        def claim(conn: sqlite3.Connection) -> int | None:
            row = conn.execute(sql, params).fetchone()
            return None if row is None else int(row[1])

        epoch: int | None = await self._call(claim)
        return epoch

    async def set_flow_run_state_if(
        self, run_id: uuid.UUID, state: State, from_types: Iterable[StateType]
    ) -> bool:
        """Move a run to ``state`` if it is in one of ``from_types``, appending the state to
        its history; durable when it returns."""
        stamp = rows.ts(state.timestamp)
        params = (
            state.type.value,
            rows.stored_name(state),
            state.message,
            stamp,
            state.is_final(),
            stamp,
            rows.encode_history([rows.history_entry(state, run_id, "flow_run_id")]),
            rows.db_id(run_id),
            rows.encode_json([t.value for t in from_types]),
        )
        sql = Q["update_flow_run_state_if"]
        changed: bool = await self._call(lambda conn: conn.execute(sql, params).rowcount > 0)
        return changed

    async def update_flow_run_fields(
        self,
        run_id: uuid.UUID,
        *,
        name: str | None = None,
        flow_version: str | None = None,
        parameters: dict[str, Any] | None = None,
        parameters_blob: bytes | None = None,
        tags: list[str] | None = None,
    ) -> bool:
        """Replace the given fields of a flow run's record (None: unchanged); False when there
        is no such run. Durable when it returns."""
        params = (
            name,
            flow_version,
            rows.encode_json(parameters) if parameters is not None else None,
            parameters_blob,
            rows.encode_json(tags) if tags is not None else None,
            rows.ts(dt.datetime.now(dt.UTC)),
            rows.db_id(run_id),
        )
        sql = Q["update_flow_run_fields"]
        changed: bool = await self._call(lambda conn: conn.execute(sql, params).rowcount > 0)
        return changed

    def put_dropped_marker(
        self, flow_run_id: uuid.UUID | None, task_run_id: uuid.UUID | None, logger: str, text: str
    ) -> None:
        """Queue a rewrite of a run's last ``logger`` line (its "N lines dropped" marker)."""
        if flow_run_id is not None:
            sql, params = Q["update_dropped_marker_of_flow_run"], (text, flow_run_id.bytes, logger)
        else:
            assert task_run_id is not None
            sql, params = Q["update_dropped_marker_of_task_run"], (text, task_run_id.bytes, logger)
        self.put_call(lambda conn: conn.execute(sql, params))
