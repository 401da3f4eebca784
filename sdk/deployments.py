"""Deployments: ``flow.to_deployment(...)``, ``.apply()``, ``run_deployment(...)``, and the
workers that serve them (``serve`` / ``aserve``). ``deploy()`` needs Prefect's server."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import sys
import time
import uuid
from typing import Any, NoReturn

from millstream._engine.exceptions import NotSupportedError
from millstream._engine.model.names import random_run_name
from millstream._engine.model.records import FlowRun
from millstream._engine.orchestrate.context import flow_run_var
from millstream._engine.results.refs import journal
from millstream._engine.serve import deployments as engine_deployments
from millstream._engine.serve import limits as serve_limits
from millstream._engine.serve.deployments import DeploymentRecord
from millstream._engine.serve.schedules import Schedule, make_schedules
from millstream._engine.serve.worker import Worker, finished, notify
from millstream._engine.settings import get_current_settings
from millstream._engine.store import Store, get_store
from millstream._engine.validation import check_against_schema, parameter_schema
from millstream._sync import dispatch, dual

# A package's search path (an empty one): Prefect's submodules of prefect.deployments, such as
# deployments.steps, then reach the import system's finders, and ``_refusals`` refuses them with
# a NotSupportedError instead of Python's "'millstream.deployments' is not a package".
__path__: list[str] = []


def deploy(*deployments: Any, **kwargs: Any) -> NoReturn:
    """Not available: building images and registering with work pools needs Prefect's server."""
    raise NotSupportedError(
        "deploy() builds images and registers deployments with work pools on Prefect's server; "
        "Millstream serves deployments in-process: use serve(flow.to_deployment(...))."
    )


class RunnerDeployment:
    """A flow with a name, default parameters and schedules, to register and serve."""

    def __init__(
        self,
        flow: Any,
        name: str,
        *,
        schedules: list[Schedule] | None = None,
        parameters: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        description: str | None = None,
        version: str | None = None,
        paused: bool | None = None,
        enforce_parameter_schema: bool = True,
        concurrency_limit: Any = None,
    ) -> None:
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(
                f"Deployment name must be a non-empty string without '/', got {name!r}"
            )
        self.flow = flow
        self.name = name
        self.flow_name: str = flow.name
        self.schedules = list(schedules or [])
        self.parameters = dict(parameters or {})
        self.tags = list(tags or [])
        self.description = description if description is not None else flow.description
        self.version = version if version is not None else flow.version
        self.paused = bool(paused)
        self.enforce_parameter_schema = enforce_parameter_schema
        self.entrypoint: str | None = flow.spec.entrypoint
        self.parameter_openapi_schema = parameter_schema(flow.fn)
        if self.parameters:
            unknown = set(self.parameters) - set(self.parameter_openapi_schema["properties"])
            if unknown:
                raise ValueError(
                    f"Deployment {name!r} sets parameter(s) {sorted(unknown)} that flow "
                    f"{self.flow_name!r} does not have"
                )
        self.id = engine_deployments.deployment_id_for(self.flow_name, name)
        self.concurrency_limit = _concurrency_config(concurrency_limit)

    def record(self) -> DeploymentRecord:
        """The database record of this deployment."""
        return DeploymentRecord(
            id=self.id,
            name=self.name,
            flow_name=self.flow_name,
            entrypoint=self.entrypoint,
            description=self.description,
            version=self.version,
            tags=self.tags,
            parameters=self.parameters,
            parameter_schema=self.parameter_openapi_schema,
            enforce_parameter_schema=self.enforce_parameter_schema,
            paused=self.paused,
            schedules=self.schedules,
        )

    async def aapply(self) -> uuid.UUID:
        """Record (or update) the deployment; returns its id."""
        store = await _store()
        store.flow_id(self.flow_name)
        applied = await engine_deployments.apply(store, self.record(), journal(self.parameters))
        limit = self.concurrency_limit.limit if self.concurrency_limit is not None else None
        serve_limits.apply_limit(store, self.id, limit)
        return applied

    apply = dual(aapply)

    def __repr__(self) -> str:
        return f"RunnerDeployment(name={self.name!r}, flow_name={self.flow_name!r})"


def _concurrency_config(value: Any) -> Any:
    """``concurrency_limit=``: an int or a ``ConcurrencyLimitConfig`` (None: no limit)."""
    from millstream.client.schemas.concurrency import ConcurrencyLimitConfig

    if value is None or isinstance(value, ConcurrencyLimitConfig):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            "concurrency_limit must be an int or a ConcurrencyLimitConfig, got "
            f"{type(value).__name__}"
        )
    return ConcurrencyLimitConfig(limit=value)


async def _store() -> Store:
    store = get_store(get_current_settings().database_path)
    await store.ensure_open()
    return store


_OPTIONS = frozenset(
    {
        "interval",
        "cron",
        "rrule",
        "schedules",
        "schedule",
        "parameters",
        "tags",
        "description",
        "version",
        "paused",
        "enforce_parameter_schema",
        "concurrency_limit",
    }
)
# Prefect options that need its server: accepted as None, named in an error otherwise.
_SERVER_ONLY = frozenset(
    {
        "work_pool_name",
        "work_queue_name",
        "job_variables",
        "triggers",
        "entrypoint_type",
        "image",
        "build",
        "push",
    }
)


def make_deployment(flow: Any, name: str, **options: Any) -> RunnerDeployment:
    """``flow.to_deployment(...)``: unsupported server-only options are named in an error."""
    server_only = {k: v for k, v in options.items() if k in _SERVER_ONLY and v is not None}
    if server_only:
        raise NotSupportedError(
            f"to_deployment({', '.join(server_only)}=...): work pools, triggers and images are "
            "Prefect server features; Millstream serves deployments in-process"
        )
    unknown = set(options) - _OPTIONS - _SERVER_ONLY
    if unknown:
        raise TypeError(f"to_deployment() got unexpected keyword argument(s): {sorted(unknown)}")
    schedules = make_schedules(
        options.get("interval"),
        options.get("cron"),
        options.get("rrule"),
        [
            *(options.get("schedules") or []),
            *([options["schedule"]] if options.get("schedule") else []),
        ],
    )
    return RunnerDeployment(
        flow,
        name,
        schedules=schedules,
        parameters=options.get("parameters"),
        tags=options.get("tags"),
        description=options.get("description"),
        version=options.get("version"),
        paused=options.get("paused"),
        enforce_parameter_schema=options.get("enforce_parameter_schema", True),
        concurrency_limit=options.get("concurrency_limit"),
    )


async def arun_deployment(
    name: str | uuid.UUID,
    parameters: dict[str, Any] | None = None,
    scheduled_time: dt.datetime | None = None,
    flow_run_name: str | None = None,
    timeout: float | None = None,
    poll_interval: float | None = None,
    tags: list[str] | None = None,
    idempotency_key: str | None = None,
    work_queue_name: str | None = None,
    as_subflow: bool = True,
    job_variables: dict[str, Any] | None = None,
) -> FlowRun:
    """Create a Scheduled run of a deployment; wait for its final state unless ``timeout=0``.

    Any process serving the deployment (``serve``/``aserve``) picks it up. With a ``timeout``
    the run is returned when it ends or when the time is up, whichever comes first.
    """
    if work_queue_name is not None or job_variables is not None:
        raise NotSupportedError(
            "run_deployment(work_queue_name=, job_variables=): work queues and job variables "
            "are Prefect server features"
        )
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be >= 0, got {timeout!r}")
    store = await _store()
    deployment = await engine_deployments.read(store, name)
    merged = {**deployment.parameters, **(parameters or {})}
    if deployment.enforce_parameter_schema and deployment.parameter_schema:
        check_against_schema(deployment.parameter_schema, merged)
    parent = flow_run_var.get()
    run = await engine_deployments.create_flow_run(
        store,
        deployment,
        store.flow_id(deployment.flow_name),
        parameters=merged,
        parameters_blob=journal(merged),
        scheduled_time=scheduled_time,
        flow_run_name=flow_run_name,
        tags=tags,
        idempotency_key=idempotency_key,
        name_factory=random_run_name,
        parent_flow_run_id=parent.flow_run.id if (as_subflow and parent is not None) else None,
    )
    notify()
    if timeout == 0:
        return run
    return await _wait_final(store, run, timeout, poll_interval)


async def _wait_final(
    store: Store, run: FlowRun, timeout: float | None, poll_interval: float | None
) -> FlowRun:
    """``run`` re-read until its state is final or ``timeout`` seconds have passed.

    A worker of this process wakes the wait when it finishes a run; one in another process is
    seen at the next poll (``poll_interval``, default ``MILLSTREAM_SERVE_POLL_INTERVAL``).
    """
    interval = poll_interval or get_current_settings().serve.poll_interval
    deadline = None if timeout is None else time.monotonic() + timeout
    with finished.listen() as woken:
        while run.state is None or not run.state.is_final():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            woken.clear()
            try:
                await asyncio.wait_for(
                    woken.wait(), interval if left is None else min(interval, left)
                )
            except TimeoutError:
                pass
            run = await store.read_flow_run(run.id)
    return run


run_deployment = dispatch(arun_deployment)


async def aserve(
    *deployments: RunnerDeployment,
    limit: int | None = None,
    pause_on_shutdown: bool = True,
    print_starting_message: bool = True,
    webserver: bool = False,
) -> None:
    """Serve deployments in this event loop until cancelled (then shut down gracefully)."""
    if not deployments:
        raise ValueError("aserve() needs at least one deployment (flow.to_deployment(...))")
    settings = get_current_settings()
    store = await _store()
    for dep in deployments:
        dep.paused = False
        await dep.aapply()
    served = [(dep.record(), dep.flow.spec) for dep in deployments]
    worker = Worker(
        store,
        served,
        settings=settings,
        limit=limit,
        pause_on_shutdown=pause_on_shutdown,
        name_factory=random_run_name,
        deployment_limits={
            d.id: d.concurrency_limit.collision_strategy.value
            for d in deployments
            if d.concurrency_limit is not None
        },
    )
    tasks = [asyncio.ensure_future(worker.run())]
    if webserver:
        from millstream._engine.serve.webserver import serve_http

        async def trigger(name: str, parameters: dict[str, Any]) -> uuid.UUID:
            return (await arun_deployment(name, parameters=parameters, timeout=0)).id

        tasks.append(asyncio.ensure_future(serve_http(trigger, deployments, settings)))
    if print_starting_message:
        names = ", ".join(f"'{d.flow_name}/{d.name}'" for d in deployments)
        print(f"Serving {names} from {settings.database_path} (Ctrl+C to stop)", file=sys.stderr)
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def serve(
    *deployments: RunnerDeployment,
    limit: int | None = None,
    pause_on_shutdown: bool = True,
    print_starting_message: bool = True,
    webserver: bool = False,
) -> None:
    """Serve deployments until SIGINT/SIGTERM (blocking)."""

    async def main() -> None:
        task = asyncio.ensure_future(
            aserve(
                *deployments,
                limit=limit,
                pause_on_shutdown=pause_on_shutdown,
                print_starting_message=print_starting_message,
                webserver=webserver,
            )
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, task.cancel)
            except (NotImplementedError, RuntimeError):  # not the main thread
                pass
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(main())


__all__ = ["RunnerDeployment", "arun_deployment", "aserve", "deploy", "run_deployment", "serve"]
