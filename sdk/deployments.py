"""Deployments: ``flow.to_deployment(...)``, ``.apply()``, ``run_deployment(...)``, and the
workers that serve them (``serve`` / ``aserve``). ``deploy()`` needs Prefect's server."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import sys
import time
import uuid
from collections.abc import Iterable
from typing import Any, NoReturn

from millstream._engine import observe
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
from millstream._sync import dispatch

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
        self.concurrency_limit, self.collision_strategy = _concurrency(concurrency_limit)
        self.concurrency_options = _options_of(concurrency_limit, self.collision_strategy)
        self.id = engine_deployments.deployment_id_for(self.flow_name, name)

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
            concurrency_limit=self.concurrency_limit,
            collision_strategy=self.collision_strategy,
        )

    async def aapply(self) -> uuid.UUID:
        """Record (or update) the deployment; returns its id."""
        store = await _store()
        store.flow_id(self.flow_name)
        applied = await engine_deployments.apply(store, self.record(), journal(self.parameters))
        serve_limits.apply_limit(store, self.id, self.concurrency_limit)
        return applied

    # Sync-compatible, as Prefect's: ``await dep.apply()`` in async code.
    apply = dispatch(aapply)

    def __repr__(self) -> str:
        return f"RunnerDeployment(name={self.name!r}, flow_name={self.flow_name!r})"


def _concurrency(value: Any) -> tuple[int | None, str | None]:
    """``concurrency_limit=`` as given to to_deployment: an int, or a ConcurrencyLimitConfig
    (its ``limit`` and ``collision_strategy``), as ``(limit, strategy)``."""
    if value is None:
        return None, None
    limit, strategy = value, None
    if not isinstance(value, int):
        limit = getattr(value, "limit", None)
        raw = getattr(value, "collision_strategy", None)
        strategy = None if raw is None else str(getattr(raw, "value", raw)).upper()
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(
            "concurrency_limit must be an int or a ConcurrencyLimitConfig(limit=...), got "
            f"{value!r} ({type(value).__name__})"
        )
    if limit < 1:
        raise ValueError(f"concurrency_limit must be a positive int, got {value!r}")
    if strategy not in (None, "ENQUEUE", "CANCEL_NEW"):
        raise ValueError(
            f"concurrency_limit collision_strategy must be ENQUEUE or CANCEL_NEW, got {strategy!r}"
        )
    return limit, strategy


def _options_of(value: Any, strategy: str | None) -> Any:
    # Prefect keeps a ConcurrencyLimitConfig's strategy as the deployment's concurrency_options.
    if strategy is None:
        return None
    from millstream.client.schemas.objects import ConcurrencyLimitStrategy, ConcurrencyOptions

    return ConcurrencyOptions(
        collision_strategy=ConcurrencyLimitStrategy(strategy),
        grace_period_seconds=getattr(value, "grace_period_seconds", None),
    )


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
        "entrypoint_type",
        "image",
        "build",
        "push",
    }
)


def make_deployment(flow: Any, name: str, **options: Any) -> RunnerDeployment:
    """``flow.to_deployment(...)``: unsupported server-only options are named in an error."""
    if options.get("triggers"):
        raise NotSupportedError(
            "to_deployment(triggers=...): triggers fire deployments from events through "
            "Prefect's server (automations); Millstream has no event system: schedule the "
            "deployment (cron=, interval=, rrule=, schedules=) or start runs with "
            "run_deployment()"
        )
    server_only = {k: v for k, v in options.items() if k in _SERVER_ONLY and v is not None}
    if server_only:
        raise NotSupportedError(
            f"to_deployment({', '.join(server_only)}=...): work pools, triggers and images are "
            "Prefect server features; Millstream serves deployments in-process"
        )
    unknown = set(options) - _OPTIONS - _SERVER_ONLY - {"triggers"}
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
    run = await _create_run(
        store,
        deployment,
        parameters,
        scheduled_time=scheduled_time,
        flow_run_name=flow_run_name,
        tags=tags,
        idempotency_key=idempotency_key,
        as_subflow=as_subflow,
    )
    if timeout == 0:
        return run
    return await _wait_final(store, run, timeout, poll_interval)


async def _create_run(
    store: Store,
    deployment: DeploymentRecord,
    parameters: dict[str, Any] | None,
    *,
    scheduled_time: dt.datetime | None = None,
    flow_run_name: str | None = None,
    tags: list[str] | None = None,
    idempotency_key: str | None = None,
    as_subflow: bool = True,
) -> FlowRun:
    """A Scheduled run of ``deployment`` (its parameters checked), and this process's workers
    woken for it."""
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
    observe.remember(run.id)  # its span will be a child of the trigger's, if served here
    notify()
    return run


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
    if webserver:
        from millstream._engine.serve.webserver import check_bind

        check_bind(settings)  # before anything is applied or started
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
            d.id: d.collision_strategy or "ENQUEUE"
            for d in deployments
            if d.concurrency_limit is not None
        },
    )
    tasks = [asyncio.ensure_future(worker.run())]
    if webserver:
        from millstream._engine.serve.webserver import serve_http

        records = {f"{d.flow_name}/{d.name}": d for d, _spec in served}

        async def trigger(name: str, parameters: dict[str, Any]) -> uuid.UUID:
            # The served deployment's record is at hand: no read of it per trigger.
            return (await _create_run(store, records[name], parameters)).id

        serving = serve_http(trigger, store.read_flow_run, deployments, settings)
        tasks.append(asyncio.ensure_future(serving))
    if print_starting_message:
        print(_banner(deployments, settings, webserver), file=sys.stderr)
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _next_run(dep: RunnerDeployment) -> dt.datetime | None:
    """When the deployment's schedules next fire (None: no active schedule)."""
    now = dt.datetime.now(dt.UTC)
    times = []
    for schedule in make_schedules(schedules=list(dep.schedules)):
        if not schedule.active:
            continue
        for horizon in (dt.timedelta(days=1), dt.timedelta(days=400)):
            found = schedule.occurrences(now, now + horizon)
            if found:
                times.append(found[0])
                break
    return min(times) if times else None


def _banner(deployments: tuple[RunnerDeployment, ...], settings: Any, webserver: bool) -> str:
    """What a worker says when it starts: what it serves, how to trigger a run, what is next."""
    names = ", ".join(f"'{d.flow_name}/{d.name}'" for d in deployments)
    where = get_store(settings.database_path).location
    lines = [f"Serving {names} from {where} (Ctrl+C to stop)"]
    base = f"http://{settings.serve.webserver_host}:{settings.serve.webserver_port}"
    for dep in deployments:
        full = f"{dep.flow_name}/{dep.name}"
        lines.append(f"  {full}: trigger a run with  millstream deployments run {full}")
        if webserver:
            lines.append(f"  {' ' * len(full)}  or  POST {base}/deployments/{full}/run")
        upcoming = _next_run(dep)
        if upcoming is not None:
            local = upcoming.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
            lines.append(f"  {' ' * len(full)}  next scheduled run: {local}")
    return "\n".join(lines)


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


def http_api(
    *deployments: RunnerDeployment,
    token: str | None = None,
    allowed_hosts: Iterable[str] | None = None,
) -> Any:
    """The worker's HTTP API as an ASGI app, to mount into an application of your own.

    ``app.mount("/millstream", http_api(etl.to_deployment("nightly")))`` (Starlette, FastAPI):
    triggering a run records it in the database, and a worker serving the deployment (this
    process's ``aserve``, or another process) runs it. The deployments are applied on the first
    request. ``token`` defaults to ``MILLSTREAM_SERVE_TOKEN`` and ``allowed_hosts`` (the
    ``Host`` names accepted besides the loopback ones; ``"*"`` for any) to
    ``MILLSTREAM_SERVE_WEBSERVER_ALLOWED_HOSTS``."""
    from millstream._engine.serve.webserver import build_app

    if not deployments:
        raise ValueError("http_api() needs at least one deployment (flow.to_deployment(...))")
    settings = get_current_settings()
    applied: list[bool] = []
    lock = asyncio.Lock()

    async def ready() -> Store:
        store = await _store()
        async with lock:
            if not applied:
                for dep in deployments:
                    await dep.aapply()
                applied.append(True)
        return store

    async def trigger(name: str, parameters: dict[str, Any]) -> uuid.UUID:
        await ready()
        return (await arun_deployment(name, parameters=parameters, timeout=0)).id

    async def read_flow_run(flow_run_id: uuid.UUID) -> Any:
        return await (await ready()).read_flow_run(flow_run_id)

    return build_app(
        deployments,
        trigger=trigger,
        read_flow_run=read_flow_run,
        token=token if token is not None else settings.serve.token,
        allowed_hosts=(
            settings.serve.webserver_allowed_hosts if allowed_hosts is None else allowed_hosts
        ),
        max_body_bytes=settings.serve.webserver_max_body_bytes,
        max_inflight=settings.serve.webserver_max_inflight,
    )


__all__ = [
    "RunnerDeployment",
    "arun_deployment",
    "aserve",
    "deploy",
    "http_api",
    "run_deployment",
    "serve",
]
