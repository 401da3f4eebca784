"""``get_client()``: Prefect's client API, read straight from the SQLite file (no HTTP).

``PrefectClient`` (async) is the one implementation; each ``SyncPrefectClient`` method is
derived from it with ``millstream._sync.dual``. Every read opens its own read connection, so a run
recorded by another process is visible as soon as that process has committed it.
"""

from __future__ import annotations

import uuid
from types import TracebackType
from typing import Any, Literal, NoReturn, Self, overload

from millstream._engine import logs
from millstream._engine.exceptions import NotSupportedError, ObjectAlreadyExists, ObjectNotFound
from millstream._engine.model.records import FlowRecord, FlowRun, LogRecord, TaskRun
from millstream._engine.model.states import State
from millstream._engine.settings import get_current_settings
from millstream._engine.store import Store, get_store
from millstream._engine.store.rows import db_id
from millstream.client._twins import blocking as _blocking
from millstream.client.artifacts import ArtifactClientMixin, SyncArtifactClientMixin
from millstream.client.concurrency import ConcurrencyClientMixin, SyncConcurrencyClientMixin
from millstream.client.flow_run_writes import FlowRunWrites
from millstream.variables import Variable

# Prefect client methods this client does not have, with why. Any other unknown name is a
# plain AttributeError (a typo should not read as a missing feature).
_SERVER_ONLY = frozenset(
    """
    api_version apply_slas_for_deployment clear_server_default_result_storage client_version
    create_automation create_block_document create_block_schema create_block_type
    create_deployment create_deployment_branch create_deployment_schedules create_flow
    create_flow_from_name create_flow_run_input create_logs create_task_run create_work_pool
    create_work_queue decrement_v1_concurrency_slots delete_automation delete_block_document
    delete_block_type delete_deployment
    delete_deployment_schedule delete_flow delete_flow_run_input
    delete_resource_owned_automations delete_task_run
    delete_work_pool delete_work_queue_by_id filter_flow_run_input find_automation
    get_most_recent_block_schema_for_block_type get_runs_in_work_queue
    get_scheduled_flow_runs_for_deployments get_scheduled_flow_runs_for_work_pool
    increment_concurrency_slots increment_concurrency_slots_with_lease
    increment_v1_concurrency_slots match_work_queues pause_automation pause_deployment
    raise_for_api_version_mismatch raise_for_api_version_mismatch_once
    read_automation read_automations read_automations_by_name read_block_document
    read_block_document_by_name read_block_documents read_block_documents_by_type
    read_block_schema_by_checksum read_block_schemas read_block_type_by_slug read_block_types
    read_deployment_schedules
    read_events read_events_page read_flow_run_input read_flow_run_state
    read_resource_related_automations
    read_server_default_result_storage read_work_pool read_work_pool_concurrency_status
    read_work_pools read_work_queue read_work_queue_by_name
    read_work_queue_concurrency_status read_work_queue_status read_work_queues
    read_worker_metadata read_workers_for_work_pool release_concurrency_slots
    release_concurrency_slots_with_lease renew_concurrency_lease request
    resume_automation resume_deployment send_worker_heartbeat set_deployment_paused_state
    set_task_run_name set_task_run_state update_automation update_block_document
    update_block_type update_deployment update_deployment_schedule update_flow_run_labels
    update_server_default_result_storage update_work_pool update_work_queue
    """.split()
)
_WHY = (
    (("work_pool", "work_queue", "worker"), "work pools, work queues and workers are server-side"),
    (("automation",), "automations run on Prefect's server"),
    (
        ("concurrency",),
        "slots are taken and released with millstream.concurrency.sync/asyncio "
        "(leases renewed by the holder), not through the client",
    ),
    (("block",), "blocks are not served over HTTP"),
    (("event",), "there is no event stream"),
    (
        ("flow_run_input",),
        "inputs are given with resume_flow_run(run_input=) or millstream.input.send_input",
    ),
    (("deployment",), "deployments are made with flow.to_deployment() and served with serve()"),
    (("version", "request", "server"), "there is no API server"),
)


def _not_supported(name: str) -> NotSupportedError:
    reason = next(
        (why for parts, why in _WHY if any(part in name for part in parts)),
        "the engine records runs, states and logs itself as it runs them",
    )
    return NotSupportedError(
        f"client.{name}() is not available in Millstream's embedded client: {reason}"
    )


class _ServerOnlyNames:
    """Names Prefect's client has and Millstream's does not: a clear NotSupportedError."""

    def __getattr__(self, name: str) -> NoReturn:
        if name in _SERVER_ONLY:
            raise _not_supported(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


class PrefectClient(ArtifactClientMixin, FlowRunWrites, ConcurrencyClientMixin, _ServerOnlyNames):
    """The async client: ``async with get_client() as client: await client.read_flow_run(id)``.

    Reads go straight to the database; ids may be UUIDs or their strings, and a missing or
    malformed id raises ``ObjectNotFound`` naming it.
    """

    # There is no API server; Prefect code that reads this gets None.
    api_url: str | None = None

    def __init__(self, store: Store) -> None:
        self._store = store

    async def __aenter__(self) -> Self:
        await self._store.ensure_open(for_reading=True)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    # -- health -------------------------------------------------------------------------------
    async def hello(self) -> str:
        """A liveness check: the database can be read."""
        await self._store.ping()
        return "hello from millstream"

    async def api_healthcheck(self) -> Exception | None:
        """None when the database can be read, else the error (Prefect's contract)."""
        try:
            await self.hello()
        except Exception as exc:
            return exc
        return None

    # -- flow runs ----------------------------------------------------------------------------
    async def read_flow_run(self, flow_run_id: uuid.UUID | str) -> FlowRun:
        """The flow run with this id (its state carries the recorded result, if any)."""
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
        """Flow runs matching every filter, newest first unless ``sort`` (a ``FlowRunSort``)
        says otherwise; ``task_run_filter`` keeps runs having a matching task run."""
        _no_work_pools(work_pool_filter, work_queue_filter)
        return await self._store.read_flow_runs(
            flow_filter=flow_filter,
            flow_run_filter=flow_run_filter,
            task_run_filter=task_run_filter,
            deployment_filter=deployment_filter,
            sort=sort,
            limit=limit,
            offset=offset,
        )

    async def count_flow_runs(
        self,
        *,
        flow_filter: Any = None,
        flow_run_filter: Any = None,
        task_run_filter: Any = None,
        deployment_filter: Any = None,
        work_pool_filter: Any = None,
        work_queue_filter: Any = None,
    ) -> int:
        """How many flow runs match every filter."""
        _no_work_pools(work_pool_filter, work_queue_filter)
        return await self._store.count_flow_runs(
            flow_filter=flow_filter,
            flow_run_filter=flow_run_filter,
            task_run_filter=task_run_filter,
            deployment_filter=deployment_filter,
        )

    async def read_flow_run_states(self, flow_run_id: uuid.UUID | str) -> list[State]:
        """Every state the flow run went through, oldest first."""
        return await self._store.read_flow_run_states(flow_run_id)

    async def delete_flow_run(self, flow_run_id: uuid.UUID | str) -> None:
        """Delete a flow run with its task runs and log lines, in one transaction."""
        db_id(flow_run_id)  # a malformed id fails here, not on the writer thread
        if not await self._store.delete_flow_run(flow_run_id):
            raise ObjectNotFound(f"Flow run {str(flow_run_id)!r} not found in {self._store.path}")

    async def create_flow_run(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Not available: a flow run is created by calling the flow, or from a deployment
        with ``create_flow_run_from_deployment`` / ``run_deployment``."""
        raise NotSupportedError(
            "client.create_flow_run() is not available in Millstream: call the flow to run "
            "it, or create a run of a deployment with client.create_flow_run_from_deployment()"
        )

    async def cancel_flow_run(self, flow_run_id: uuid.UUID | str) -> State:
        """Cancel a flow run: at once if not started, else its process stops it (async bodies
        at once, sync bodies at their next task call). Returns the state it was put in."""
        from millstream._engine.serve.control import cancel_flow_run

        return await cancel_flow_run(self._store, flow_run_id)

    async def resume_flow_run(
        self, flow_run_id: uuid.UUID | str, run_input: dict[str, Any] | None = None
    ) -> None:
        """Resume a paused flow run."""
        from millstream._engine.serve.control import resume_flow_run

        await resume_flow_run(self._store, flow_run_id, run_input)

    # -- flows --------------------------------------------------------------------------------
    async def read_flow(self, flow_id: uuid.UUID | str) -> FlowRecord:
        """The flow with this id."""
        found = await self._store.read_flow(flow_id)
        if found is None:
            raise ObjectNotFound(f"Flow {str(flow_id)!r} not found in {self._store.path}")
        return found

    async def read_flow_by_name(self, flow_name: str) -> FlowRecord:
        """The flow with this name."""
        found = await self._store.read_flow_by_name(flow_name)
        if found is None:
            raise ObjectNotFound(f"Flow {flow_name!r} not found in {self._store.path}")
        return found

    async def read_flows(
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
    ) -> list[FlowRecord]:
        """Flows matching ``flow_filter`` with a run matching the run filters, by name unless
        ``sort`` (a ``FlowSort``) says otherwise."""
        _no_work_pools(work_pool_filter, work_queue_filter)
        return await self._store.read_flows(
            flow_filter=flow_filter,
            flow_run_filter=flow_run_filter,
            task_run_filter=task_run_filter,
            deployment_filter=deployment_filter,
            sort=sort,
            limit=limit,
            offset=offset,
        )

    # -- task runs ----------------------------------------------------------------------------
    async def read_task_run(self, task_run_id: uuid.UUID | str) -> TaskRun:
        """The task run with this id (its state carries the recorded result, if any)."""
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
        """Task runs matching ``task_run_filter`` whose flow runs match the other filters,
        newest first unless ``sort`` (a ``TaskRunSort``) says otherwise."""
        return await self._store.read_task_runs(
            flow_filter=flow_filter,
            flow_run_filter=flow_run_filter,
            task_run_filter=task_run_filter,
            deployment_filter=deployment_filter,
            sort=sort,
            limit=limit,
            offset=offset,
        )

    async def read_task_run_states(self, task_run_id: uuid.UUID | str) -> list[State]:
        """Every state the task run went through, oldest first (retries show as
        AwaitingRetry and Retrying)."""
        return await self._store.read_task_run_states(task_run_id)

    # -- logs ---------------------------------------------------------------------------------
    async def read_logs(
        self,
        log_filter: Any = None,
        limit: int | None = None,
        offset: int | None = None,
        sort: Any = None,
    ) -> list[LogRecord]:
        """Log lines matching ``log_filter``, in the order they were recorded unless ``sort``
        (a ``LogSort``) says otherwise."""
        # Lines logged so far in this process are handed to the store first: the read (which
        # commits what the store has queued) then sees them.
        logs.flush()
        return await self._store.read_logs(
            log_filter=log_filter, sort=sort, limit=limit, offset=offset
        )

    # -- variables ----------------------------------------------------------------------------
    async def read_variable_by_name(self, name: str) -> Variable | None:
        """The variable called ``name``, or None if there is none."""
        found = await self._store.read_variable(name)
        return _variable(found) if found is not None else None

    async def read_variables(self, limit: int | None = None) -> list[Variable]:
        """Every variable, by name."""
        return [_variable(fields) for fields in await self._store.read_variables(limit)]

    async def create_variable(self, variable: Any) -> Variable:
        """Create a variable from an object with ``name``, ``value`` and (optionally) ``tags``;
        an existing name raises ``ObjectAlreadyExists``."""
        name = variable.name
        if await self.read_variable_by_name(name) is not None:
            raise ObjectAlreadyExists(f"Variable {name!r} already exists")
        tags = getattr(variable, "tags", None)
        return await Variable.aset(name, variable.value, tags=tags, overwrite=False)

    async def update_variable(self, variable: Any) -> None:
        """Change the ``value`` and/or ``tags`` (those not None) of the variable called
        ``variable.name``; a missing one raises ``ObjectNotFound``."""
        current = await self.read_variable_by_name(variable.name)
        if current is None:
            raise ObjectNotFound(f"Variable {variable.name!r} not found")
        value = getattr(variable, "value", None)
        tags = getattr(variable, "tags", None)
        await Variable.aset(
            current.name,
            current.value if value is None else value,
            tags=current.tags if tags is None else tags,
            overwrite=True,
        )

    async def delete_variable_by_name(self, name: str) -> None:
        """Delete the variable called ``name``; a missing one raises ``ObjectNotFound``."""
        if not await Variable.aunset(name):
            raise ObjectNotFound(f"Variable {name!r} not found")

    # -- deployments --------------------------------------------------------------------------
    async def read_deployment_by_name(self, name: str) -> Any:
        """The deployment called ``flow-name/deployment-name``."""
        from millstream._engine.serve.deployments import read

        if "/" not in name:
            raise ValueError(f"Give the deployment as 'flow-name/deployment-name', got {name!r}")
        return await read(self._store, name)

    async def read_deployment(self, deployment_id: uuid.UUID | str) -> Any:
        """The deployment with this id."""
        from millstream._engine.serve.deployments import read

        return await read(self._store, str(deployment_id))

    async def read_deployments(self, *, limit: int | None = None, offset: int = 0) -> list[Any]:
        """Every deployment, by flow and name."""
        from millstream._engine.serve.deployments import read_all

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
        from millstream.deployments import arun_deployment

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


def _no_work_pools(work_pool_filter: Any, work_queue_filter: Any) -> None:
    if work_pool_filter is not None or work_queue_filter is not None:
        raise NotSupportedError(
            "work_pool_filter / work_queue_filter: work pools and work queues are Prefect "
            "server concepts; Millstream has none to filter on"
        )


def _variable(fields: tuple[str, Any, list[str]]) -> Variable:
    name, value, tags = fields
    return Variable(name=name, value=value, tags=tags)


class SyncPrefectClient(SyncArtifactClientMixin, SyncConcurrencyClientMixin, _ServerOnlyNames):
    """The blocking client: ``with get_client(sync_client=True) as client: ...``; the same
    methods as ``PrefectClient``, each derived from its async one."""

    api_url: str | None = None

    def __init__(self, store: Store) -> None:
        self._client = PrefectClient(store)

    def __enter__(self) -> Self:
        self._client._store.ensure_open_sync(for_reading=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    # One line per method, so type checkers see every signature; a test checks that each
    # public PrefectClient coroutine has its twin here.
    hello = _blocking(PrefectClient.hello)
    api_healthcheck = _blocking(PrefectClient.api_healthcheck)
    read_flow_run = _blocking(PrefectClient.read_flow_run)
    read_flow_runs = _blocking(PrefectClient.read_flow_runs)
    count_flow_runs = _blocking(PrefectClient.count_flow_runs)
    read_flow_run_states = _blocking(PrefectClient.read_flow_run_states)
    delete_flow_run = _blocking(PrefectClient.delete_flow_run)
    create_flow_run = _blocking(PrefectClient.create_flow_run)
    set_flow_run_state = _blocking(PrefectClient.set_flow_run_state)
    update_flow_run = _blocking(PrefectClient.update_flow_run)
    set_flow_run_name = _blocking(PrefectClient.set_flow_run_name)
    cancel_flow_run = _blocking(PrefectClient.cancel_flow_run)
    resume_flow_run = _blocking(PrefectClient.resume_flow_run)
    read_flow = _blocking(PrefectClient.read_flow)
    read_flow_by_name = _blocking(PrefectClient.read_flow_by_name)
    read_flows = _blocking(PrefectClient.read_flows)
    read_task_run = _blocking(PrefectClient.read_task_run)
    read_task_runs = _blocking(PrefectClient.read_task_runs)
    read_task_run_states = _blocking(PrefectClient.read_task_run_states)
    read_logs = _blocking(PrefectClient.read_logs)
    read_variable_by_name = _blocking(PrefectClient.read_variable_by_name)
    read_variables = _blocking(PrefectClient.read_variables)
    create_variable = _blocking(PrefectClient.create_variable)
    update_variable = _blocking(PrefectClient.update_variable)
    delete_variable_by_name = _blocking(PrefectClient.delete_variable_by_name)
    read_deployment_by_name = _blocking(PrefectClient.read_deployment_by_name)
    read_deployment = _blocking(PrefectClient.read_deployment)
    read_deployments = _blocking(PrefectClient.read_deployments)
    create_flow_run_from_deployment = _blocking(PrefectClient.create_flow_run_from_deployment)


@overload
def get_client(
    httpx_settings: dict[str, Any] | None = None, sync_client: Literal[False] = False
) -> PrefectClient: ...
@overload
def get_client(
    httpx_settings: dict[str, Any] | None = None, *, sync_client: Literal[True]
) -> SyncPrefectClient: ...
@overload
def get_client(
    httpx_settings: dict[str, Any] | None, sync_client: Literal[True]
) -> SyncPrefectClient: ...
@overload
def get_client(
    httpx_settings: dict[str, Any] | None = None, sync_client: bool = False
) -> PrefectClient | SyncPrefectClient: ...
def get_client(
    httpx_settings: dict[str, Any] | None = None, sync_client: bool = False
) -> PrefectClient | SyncPrefectClient:
    """A client over the current database (``settings.database_path``): async by default,
    blocking with ``sync_client=True``. There is no HTTP connection: ``httpx_settings``
    raises rather than being silently ignored."""
    if httpx_settings is not None:
        raise NotSupportedError(
            f"get_client(httpx_settings={httpx_settings!r}): Millstream's client reads the "
            "SQLite file directly; there is no HTTP connection to configure"
        )
    store = get_store(get_current_settings().database_path)
    return SyncPrefectClient(store) if sync_client else PrefectClient(store)


__all__ = ["PrefectClient", "SyncPrefectClient", "get_client"]
