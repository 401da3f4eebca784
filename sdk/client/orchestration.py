"""``get_client()``: reads (and a few writes) straight from the SQLite file, no HTTP.

The async client is the one implementation; the sync client's methods are derived from it
with ``sdk._sync.dual``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from types import TracebackType
from typing import Any, NoReturn, Self

from engine import queries
from engine.exceptions import NotSupportedError, ObjectNotFound
from engine.records import FlowRecord, FlowRun, LogRecord, TaskRun
from engine.settings import get_current_settings
from engine.states import State
from engine.store import Store, db_id, flow_run_from_row, get_store, task_run_from_row
from sdk._sync import dual

# Prefect client methods that need its server or Cloud: named in a clear error here.
_SERVER_ONLY = {
    "create_work_pool",
    "read_work_pools",
    "read_work_pool",
    "create_work_queue",
    "read_work_queues",
    "read_workers_for_work_pool",
    "create_automation",
    "read_automations",
    "create_artifact",
    "read_artifacts",
    "create_concurrency_limit",
    "read_concurrency_limits",
    "create_global_concurrency_limit",
    "create_block_document",
    "read_block_document",
    "read_block_documents",
    "create_block_type",
    "read_block_types",
    "create_deployment",
    "update_deployment",
    "pause_deployment",
    "resume_deployment",
    "create_flow_run_input",
    "read_events",
}


class _ClientBase:
    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> NoReturn:
        if name in _SERVER_ONLY:
            raise NotSupportedError(
                f"client.{name}() needs Prefect's server or Cloud; Millstream's client reads "
                "the embedded SQLite database and does not provide it"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def _rows_to_flow(row: sqlite3.Row) -> FlowRecord:
    from engine.store import _parse_ts

    return FlowRecord(id=uuid.UUID(row["id"]), name=row["name"], created=_parse_ts(row["created"]))


class PrefectClient(_ClientBase):
    """The async client: ``async with get_client() as client: await client.read_flow_run(id)``."""

    async def __aenter__(self) -> Self:
        await self._store.ensure_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def hello(self) -> str:
        """A liveness check: the database can be read."""
        await self._store.fetchall_sql("SELECT 1")
        return "hello from millstream"

    async def read_flow_run(self, flow_run_id: uuid.UUID | str) -> FlowRun:
        """The flow run with this id (its state carries the recorded result)."""
        return await self._store.read_flow_run(flow_run_id)

    async def read_flow_runs(
        self,
        *,
        flow_filter: Any = None,
        flow_run_filter: Any = None,
        task_run_filter: Any = None,
        deployment_filter: Any = None,
        work_pool_filter: Any = None,
        work_queue_filter: Any = None,
        sort: Any = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[FlowRun]:
        """Flow runs matching the filters, newest first unless ``sort`` says otherwise."""
        if work_pool_filter is not None or work_queue_filter is not None:
            raise NotSupportedError("Work pools and work queues are not part of Millstream")
        where = queries.flow_run_where(
            flow_filter, flow_run_filter, task_run_filter, deployment_filter
        )
        order = queries.sort_clause(queries.FLOW_RUN_SORTS, sort, "flow run")
        sql, params = queries.select("flow_run", where, order, limit, offset)
        rows = await self._store.fetchall_sql(sql, tuple(params))
        return [flow_run_from_row(r) for r in rows]

    async def read_flow_run_states(self, flow_run_id: uuid.UUID | str) -> list[State]:
        """Every state of a flow run, oldest first."""
        return await self._store.read_flow_run_states(flow_run_id)

    async def read_flow(self, flow_id: uuid.UUID | str) -> FlowRecord:
        """The flow with this id."""
        rows = await self._store.fetchall_sql("SELECT * FROM flow WHERE id = ?", (db_id(flow_id),))
        if not rows:
            raise ObjectNotFound(f"Flow {str(flow_id)!r} not found")
        return _rows_to_flow(rows[0])

    async def read_flow_by_name(self, flow_name: str) -> FlowRecord:
        """The flow with this name."""
        rows = await self._store.fetchall_sql("SELECT * FROM flow WHERE name = ?", (flow_name,))
        if not rows:
            raise ObjectNotFound(f"Flow {flow_name!r} not found")
        return _rows_to_flow(rows[0])

    async def read_flows(
        self, *, flow_filter: Any = None, limit: int | None = None, offset: int = 0
    ) -> list[FlowRecord]:
        """Flows matching the filter, by name."""
        where: queries.Where = ([], [])
        names = getattr(getattr(flow_filter, "name", None), "any_", None)
        ids = getattr(getattr(flow_filter, "id", None), "any_", None)
        queries._in("name", names, where)
        queries._in("id", queries._ids(ids), where)
        sql, params = queries.select("flow", where, "name ASC", limit, offset)
        return [_rows_to_flow(r) for r in await self._store.fetchall_sql(sql, tuple(params))]

    async def read_task_run(self, task_run_id: uuid.UUID | str) -> TaskRun:
        """The task run with this id (its state carries the recorded result)."""
        return await self._store.read_task_run(task_run_id)

    async def read_task_runs(
        self,
        *,
        flow_filter: Any = None,
        flow_run_filter: Any = None,
        task_run_filter: Any = None,
        deployment_filter: Any = None,
        sort: Any = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[TaskRun]:
        """Task runs matching the filters, in creation order unless ``sort`` says otherwise."""
        where = queries.task_run_where(task_run_filter)
        runs = queries.flow_run_where(flow_filter, flow_run_filter, None, deployment_filter)
        if runs[0]:
            where[0].append(
                "flow_run_id IN (SELECT id FROM flow_run WHERE " + " AND ".join(runs[0]) + ")"
            )
            where[1].extend(runs[1])
        order = queries.sort_clause(queries.TASK_RUN_SORTS, sort, "task run")
        sql, params = queries.select("task_run", where, order, limit, offset)
        rows = await self._store.fetchall_sql(sql, tuple(params))
        return [task_run_from_row(r) for r in rows]

    async def read_task_run_states(self, task_run_id: uuid.UUID | str) -> list[State]:
        """Every state of a task run, oldest first (AwaitingRetry/Retrying included)."""
        return await self._store.read_task_run_states(task_run_id)

    async def read_logs(
        self,
        log_filter: Any = None,
        limit: int | None = None,
        offset: int | None = None,
        sort: Any = None,
    ) -> list[LogRecord]:
        """Log lines matching the filter, oldest first unless ``sort`` says otherwise."""
        where = queries.log_where(log_filter)
        order = queries.sort_clause(queries.LOG_SORTS, sort, "log")
        sql, params = queries.select("log", where, order, limit, offset)
        rows = await self._store.fetchall_sql(sql, tuple(params))
        from engine.store import _parse_ts, _uuid

        return [
            LogRecord(
                id=r["id"],
                flow_run_id=_uuid(r["flow_run_id"]),
                task_run_id=_uuid(r["task_run_id"]),
                level=r["level"],
                name=r["name"],
                message=r["message"],
                timestamp=_parse_ts(r["timestamp"]),  # type: ignore[arg-type]
            )
            for r in rows
        ]

    async def read_variable_by_name(self, name: str) -> Any:
        """The variable called ``name``, or None."""
        from sdk.variables import read_variable

        return await read_variable(name)

    async def delete_flow_run(self, flow_run_id: uuid.UUID | str) -> None:
        """Delete a flow run with its task runs and log lines (in one transaction)."""
        run_id = db_id(flow_run_id)

        def delete(conn: sqlite3.Connection) -> int:
            deleted = conn.execute("DELETE FROM flow_run WHERE id = ?", (run_id,)).rowcount
            if deleted:
                conn.execute("DELETE FROM task_run WHERE flow_run_id = ?", (run_id,))
                conn.execute("DELETE FROM log WHERE flow_run_id = ?", (run_id,))
            return int(deleted)

        if not await asyncio.wrap_future(self._store.put_call(delete)):
            raise ObjectNotFound(f"Flow run {str(flow_run_id)!r} not found")

    async def cancel_flow_run(self, flow_run_id: uuid.UUID | str) -> State:
        """Cancel a flow run: at once if not started, else its process stops it (async bodies
        at once, sync bodies at their next task call). Returns the state it was put in."""
        from engine.control import cancel_flow_run

        return await cancel_flow_run(self._store, flow_run_id)

    async def resume_flow_run(
        self, flow_run_id: uuid.UUID | str, run_input: dict[str, Any] | None = None
    ) -> None:
        """Resume a paused flow run."""
        from engine.control import resume_flow_run

        await resume_flow_run(self._store, flow_run_id, run_input)

    async def read_deployment_by_name(self, name: str) -> Any:
        """The deployment called ``flow-name/deployment-name``."""
        from engine.deployments import read

        if "/" not in name:
            raise ValueError(f"Give the deployment as 'flow-name/deployment-name', got {name!r}")
        return await read(self._store, name)

    async def read_deployment(self, deployment_id: uuid.UUID | str) -> Any:
        """The deployment with this id."""
        from engine.deployments import read

        return await read(self._store, str(deployment_id))

    async def read_deployments(self, *, limit: int | None = None, offset: int = 0) -> list[Any]:
        """Every deployment, by flow and name."""
        from engine.deployments import read_all

        return await read_all(self._store, limit=limit, offset=offset)

    async def create_flow_run_from_deployment(
        self,
        deployment_id: uuid.UUID | str,
        *,
        parameters: dict[str, Any] | None = None,
        state: Any = None,
        name: str | None = None,
        tags: list[str] | None = None,
        idempotency_key: str | None = None,
    ) -> FlowRun:
        """A Scheduled run of a deployment (what ``run_deployment(..., timeout=0)`` does)."""
        from sdk.deployments import arun_deployment

        scheduled = getattr(getattr(state, "state_details", None), "scheduled_time", None)
        return await arun_deployment(
            deployment_id,
            parameters=parameters,
            scheduled_time=scheduled,
            flow_run_name=name,
            tags=tags,
            idempotency_key=idempotency_key,
            timeout=0,
        )

    async def create_flow_run(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Not available: flow runs are created by calling flows (deployments come later)."""
        raise NotSupportedError(
            "client.create_flow_run() is not available: call the flow to create a run"
        )

    async def set_flow_run_state(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Not available: states are set by the engine running the flow."""
        raise NotSupportedError(
            "client.set_flow_run_state() is not available: the engine running a flow sets "
            "its states"
        )


_ASYNC_METHODS = (
    "hello",
    "read_deployment_by_name",
    "read_deployment",
    "read_deployments",
    "create_flow_run_from_deployment",
    "cancel_flow_run",
    "resume_flow_run",
    "read_flow_run",
    "read_flow_runs",
    "read_flow_run_states",
    "read_flow",
    "read_flow_by_name",
    "read_flows",
    "read_task_run",
    "read_task_runs",
    "read_task_run_states",
    "read_logs",
    "read_variable_by_name",
    "delete_flow_run",
    "create_flow_run",
    "set_flow_run_state",
)


class SyncPrefectClient(_ClientBase):
    """The blocking client: ``with get_client(sync_client=True) as client: ...``."""

    def __enter__(self) -> Self:
        self._store.ensure_open_sync()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


for _name in _ASYNC_METHODS:
    setattr(SyncPrefectClient, _name, dual(getattr(PrefectClient, _name)))


def get_client(httpx_settings: dict[str, Any] | None = None, sync_client: bool = False) -> Any:
    """A client over the current database: async by default, blocking with ``sync_client``."""
    if httpx_settings is not None:
        raise NotSupportedError(
            f"get_client(httpx_settings={httpx_settings!r}): Millstream's client talks to the "
            "SQLite file directly; there is no HTTP connection to configure"
        )
    store = get_store(get_current_settings().database_path)
    return SyncPrefectClient(store) if sync_client else PrefectClient(store)


__all__ = ["PrefectClient", "SyncPrefectClient", "get_client"]
