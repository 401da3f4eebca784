"""The worker: runs the flow runs of served deployments, claimed from the shared database.

One loop per worker: create the runs that schedules make due (each once, whatever the number of
workers: their ids are derived from the deployment and the time), claim due Scheduled runs one
conditional UPDATE at a time, run them concurrently up to ``limit``, and wait for a wake-up (a
run triggered in this process), a finished run, or the poll interval (a run triggered
elsewhere). On start it recovers orphaned runs of its deployments; on shutdown it stops
claiming, lets running flows finish for a grace period, then cancels them (Cancelled,
on_cancellation hooks) and pauses schedules if asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from millstream._engine import observe
from millstream._engine.bridge.task_runners import default_task_runner
from millstream._engine.exceptions import ConfigurationError
from millstream._engine.model.records import FlowRun
from millstream._engine.model.spec import FlowSpec
from millstream._engine.model.states import Cancelled, Late, now
from millstream._engine.orchestrate import cancellation
from millstream._engine.orchestrate.claims import take_over
from millstream._engine.orchestrate.flow_run import run_flow
from millstream._engine.serve import deployments, limits
from millstream._engine.serve.deployments import DeploymentRecord
from millstream._engine.serve.recovery import (
    find_orphans,
    mark_unresumable,
    recorded_parameters,
    recover_all,
)
from millstream._engine.settings.keys import LEASE_MARGIN
from millstream._engine.store import Store

logger = logging.getLogger("millstream.worker")


class _Wakeup:
    """Wakes every coroutine of this process that listens, on whichever loop it runs.

    What happens in another process is found by polling; this saves the poll interval when
    it happens here.
    """

    def __init__(self) -> None:
        self._events: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._lock = threading.Lock()

    def fire(self) -> None:
        """Set every listener's event (thread-safe)."""
        with self._lock:
            events = list(self._events)
        for loop, event in events:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that listener's loop has closed
                pass

    @contextlib.contextmanager
    def listen(self) -> Iterator[asyncio.Event]:
        """An event set by each ``fire()`` while the block runs (clear it before waiting)."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._events.add(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                self._events.discard(entry)


def check_lease(settings: Any) -> None:
    """Refuse a lease that heartbeats cannot keep (``ConfigurationError`` naming both)."""
    lease, beat = settings.serve.lease_seconds, settings.serve.heartbeat_seconds
    if lease < LEASE_MARGIN * beat:
        raise ConfigurationError(
            f"MILLSTREAM_SERVE_LEASE_SECONDS ({lease:g}) must be at least {LEASE_MARGIN:g} x "
            f"MILLSTREAM_SERVE_HEARTBEAT_SECONDS ({beat:g}): a healthy run would be taken over "
            "between two heartbeats. Raise the lease or lower the heartbeat interval."
        )


# A run was triggered in this process (workers claim it now) / a worker of this process
# finished a run (run_deployment callers re-read its state now).
triggered = _Wakeup()
finished = _Wakeup()


def notify() -> None:
    """Wake the workers of this process (a run was just triggered here)."""
    triggered.fire()


class Worker:
    """Serves deployments from one database until cancelled."""

    def __init__(
        self,
        store: Store,
        served: list[tuple[DeploymentRecord, FlowSpec]],
        *,
        settings: Any,
        limit: int | None = None,
        pause_on_shutdown: bool = True,
        name_factory: Callable[[], str],
        deployment_limits: dict[uuid.UUID, str] | None = None,
    ) -> None:
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        check_lease(settings)
        self.store = store
        self.by_id = {dep.id: (dep, spec) for dep, spec in served}
        self.settings = settings
        self.limit = limit
        self.pause_on_shutdown = pause_on_shutdown
        self.name_factory = name_factory
        self.running: dict[asyncio.Task[Any], uuid.UUID] = {}
        # Deployments with a concurrency limit -> collision strategy (serve/limits.py).
        self.limited = dict(deployment_limits or {})
        self.executed = 0
        self.started = asyncio.Event()

    async def run(self) -> None:
        """Serve until cancelled, then shut down gracefully (and re-raise the cancellation)."""
        await self.store.ensure_open()
        self.store.poll_seconds = self.settings.serve.poll_interval
        self.store.heartbeat_seconds = self.settings.serve.heartbeat_seconds
        with triggered.listen() as wake:
            await self._serve(wake)

    async def _serve(self, wake: asyncio.Event) -> None:
        try:
            await self._recover()
            checked = now()
            # Orphans (a killed or stopped worker's runs) are looked for several times per
            # lease, so they are taken over soon after their lease expires.
            scan_every = self.settings.serve.lease_seconds / 4
            next_scan = asyncio.get_running_loop().time() + scan_every
            self.started.set()
            while True:
                current = now()
                await self._create_due_runs(checked, current)
                checked = current
                if asyncio.get_running_loop().time() >= next_scan:
                    next_scan = asyncio.get_running_loop().time() + scan_every
                    await self._take_over_orphans()
                await self._claim_and_start()
                wake.clear()
                waiter = asyncio.ensure_future(wake.wait())
                try:
                    await asyncio.wait(
                        {waiter, *self.running},
                        timeout=min(self.settings.serve.poll_interval, scan_every),
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    waiter.cancel()
        except asyncio.CancelledError:
            await asyncio.shield(self._shutdown())
            raise

    async def _recover(self) -> None:
        live = self.store.live_runs
        orphans = await recover_orphans_of(self.store, set(self.by_id), self.settings, live)
        for run_id in orphans:
            logger.info("Recovered orphaned flow run %s", run_id)

    async def _take_over_orphans(self) -> None:
        """Claim the orphaned runs of served deployments and resume them alongside the rest."""
        mine = self.store.live_runs | set(self.running.values())
        lease = self.settings.serve.lease_seconds
        for run in await find_orphans(self.store, lease, mine):
            if run.deployment_id not in self.by_id:
                continue
            if self.limit is not None and len(self.running) >= self.limit:
                return
            if not await take_over(self.store, run):
                continue
            logger.info("Taking over orphaned flow run %s", run.id)
            task = asyncio.ensure_future(self._resume(run))
            self.running[task] = run.id
            task.add_done_callback(self._finished)

    async def _resume(self, run: FlowRun) -> None:
        assert run.deployment_id is not None
        dep, spec = self.by_id[run.deployment_id]
        try:
            parameters = recorded_parameters(run)
        except Exception as exc:
            await mark_unresumable(self.store, run, str(exc))
            return
        executor = None if spec.is_async else default_task_runner().acquire()
        await run_flow(
            spec, parameters, executor=executor, flow_run_id=run.id, deployment=dep, claimed=run
        )

    async def _create_due_runs(self, since: dt.datetime, until: dt.datetime) -> None:
        for dep, _spec in self.by_id.values():
            if dep.paused or not dep.schedules:
                continue
            for schedule in dep.schedules:
                if not schedule.active:
                    continue
                for when in schedule.occurrences(since, until):
                    await deployments.create_flow_run(
                        self.store,
                        dep,
                        self.store.flow_id(dep.flow_name),
                        parameters=dict(dep.parameters),
                        parameters_blob=None,
                        scheduled_time=when,
                        flow_run_name=None,
                        tags=None,
                        idempotency_key=None,
                        name_factory=self.name_factory,
                        run_id=deployments.scheduled_run_id(dep.id, when),
                    )

    async def _claim_and_start(self) -> None:
        unlimited = [i for i in self.by_id if i not in self.limited]
        while self.limit is None or len(self.running) < self.limit:
            run = await deployments.claim_next(self.store, unlimited)
            if run is None:
                break
            self._start(run, None)
        await self._claim_limited()

    async def _claim_limited(self) -> None:
        for dep_id, strategy in self.limited.items():
            while self.limit is None or len(self.running) < self.limit:
                claimed = await limits.claim_limited(self.store, dep_id, strategy)
                if claimed is None:
                    break
                self._start(*claimed)

    def _start(self, run: FlowRun, grant: Any) -> None:
        task = asyncio.ensure_future(self._execute(run))
        self.running[task] = run.id
        task.add_done_callback(self._finished)
        if grant is not None:
            # The deployment's slot is held for the whole run and given back when it ends.
            task.add_done_callback(lambda _task: limits.release(grant))

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self.running.pop(task, None)
        self.executed += 1
        finished.fire()
        if not task.cancelled() and task.exception() is not None:
            logger.error("Serving a flow run failed: %s", task.exception())

    async def _execute(self, run: FlowRun) -> None:
        assert run.deployment_id is not None
        dep, spec = self.by_id[run.deployment_id]
        grace = dt.timedelta(seconds=self.settings.serve.late_grace_seconds)
        expected = run.expected_start_time or run.created
        if expected is not None and now() - expected > grace:
            late = Late(scheduled_time=expected, message="Started later than its grace period")
            run.state = late
            self.store.put_flow_run_state(run, late)
            if self.settings.serve.late_runs == "skip":
                skipped = Cancelled(
                    message="Skipped: it was late (MILLSTREAM_SERVE_LATE_RUNS=skip)"
                )
                run.state = skipped
                run.end_time = skipped.timestamp
                self.store.put_flow_run_state(run, skipped)
                await self.store.flush()
                return
        # Sync flow bodies must not run on this loop: they run on the task runner's pool.
        executor = None if spec.is_async else default_task_runner().acquire()

        # The trigger's trace, when it was triggered in this process with tracing on.
        with observe.attached(observe.recall(run.id)):
            await run_flow(
                spec,
                recorded_parameters(run),
                executor=executor,
                flow_run_id=run.id,
                deployment=dep,
                claimed=run,
            )

    async def _shutdown(self) -> None:
        grace = self.settings.serve.shutdown_grace_seconds
        if self.running:
            await asyncio.wait(list(self.running), timeout=grace)
        for run_id in list(self.running.values()):
            cancellation.request(run_id)
        if self.running:
            await asyncio.wait(list(self.running), timeout=max(grace, 5.0))
        if self.pause_on_shutdown:
            await deployments.set_paused(self.store, list(self.by_id), True)
        await self.store.flush()


async def recover_orphans_of(
    store: Store, deployment_ids: set[uuid.UUID], settings: Any, live: set[uuid.UUID]
) -> list[uuid.UUID]:
    """Resume orphaned runs (lease expired or owner dead) of these deployments."""
    executor = default_task_runner().acquire()
    report = await recover_all(
        store,
        lease_seconds=settings.serve.lease_seconds,
        executor=executor,
        live_here=live,
        deployment_ids=deployment_ids,
    )
    return report.resumed
