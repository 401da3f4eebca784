"""Durable recovery: find flow runs whose process died, claim them, and run them to the end.

A run is orphaned when it is not final and its owner is gone: on this host its pid is dead, on
any host its heartbeat is older than the lease. Claiming is one conditional UPDATE, so two
recoverers never resume the same run. Resuming re-enters the same flow run id; the engine then
returns the journaled results of its completed task runs instead of running them again.
"""

from __future__ import annotations

import datetime as dt
import importlib
import importlib.util
import logging
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import msgspec

from millstream._engine.bridge.pids import pid_alive
from millstream._engine.exceptions import RecoveryError
from millstream._engine.model.keys import SCRIPT_MODULE_PREFIX
from millstream._engine.model.records import FlowRun
from millstream._engine.model.spec import FlowSpec
from millstream._engine.model.states import Crashed, now
from millstream._engine.orchestrate.claims import take_over
from millstream._engine.orchestrate.flow_run import run_flow
from millstream._engine.store import HOSTNAME, Store

logger = logging.getLogger("millstream.engine")

# Flow files are imported again under this module-name prefix (``__main__`` is taken).


class RecoveryReport(msgspec.Struct, kw_only=True):
    """What one recovery pass did, run by run."""

    resumed: list[uuid.UUID] = msgspec.field(default_factory=list)
    crashed: list[uuid.UUID] = msgspec.field(default_factory=list)
    skipped: list[uuid.UUID] = msgspec.field(default_factory=list)


def is_orphan(run: FlowRun, lease_seconds: float, live_here: set[uuid.UUID]) -> bool:
    """Whether ``run``'s owner is gone (dead pid on this host, or heartbeat lease expired)."""
    if run.id in live_here:
        return False
    if run.hostname == HOSTNAME and run.pid is not None:
        if run.pid == os.getpid():
            return True  # recorded by this process but not live in it: a previous life
        if not pid_alive(run.pid):
            return True
    # A live pid whose heartbeat stopped (a stopped or hung process) has lost its lease too:
    # its writes are fenced once another owner claims the run.
    beat = run.heartbeat or run.start_time or run.created
    return beat is None or (now() - beat).total_seconds() > lease_seconds


def relocated_flow_file(where: str) -> Path | None:
    """The flow file recorded as ``where``, or where it went when its checkout moved.

    A recorded path that no longer exists is looked for under the working directory by its
    trailing parts, longest first: ``/old/checkout/flows/etl.py`` is found as
    ``./checkout/flows/etl.py``, then ``./flows/etl.py``, then ``./etl.py``. Task results
    recorded by the old copy are reused only where the task code is unchanged.
    """
    path = Path(where)
    if path.is_file():
        return path
    parts = path.parts[1:] if path.is_absolute() else path.parts
    cwd = Path.cwd()
    for start in range(len(parts)):
        candidate = cwd.joinpath(*parts[start:])
        if candidate.is_file():
            return candidate
    return None


def load_flow_spec(entrypoint: str | None) -> FlowSpec:
    """Import the flow recorded as ``module:qualname`` or ``/path/file.py:qualname``."""
    if not entrypoint or ":" not in entrypoint:
        raise RecoveryError(f"the run records no importable entrypoint ({entrypoint!r})")
    where, qualname = entrypoint.rsplit(":", 1)
    try:
        if where.endswith(".py"):
            path = relocated_flow_file(where)
            if path is None:
                raise RecoveryError(f"flow file {where!r} no longer exists")
            if str(path) != where:
                logger.warning(
                    "Flow file %r no longer exists; resuming the flow run from %r, found under "
                    "the working directory",
                    where,
                    str(path),
                )
            key = str(path)
            name = f"{SCRIPT_MODULE_PREFIX}{uuid.uuid5(uuid.NAMESPACE_URL, key).hex[:12]}"
            module = sys.modules.get(name)
            if module is None:
                spec = importlib.util.spec_from_file_location(name, path)
                if spec is None or spec.loader is None:
                    raise RecoveryError(f"cannot import flow file {where!r}")
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
        obj: Any = module
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except RecoveryError:
        raise
    except Exception as exc:
        raise RecoveryError(
            f"flow {entrypoint!r} is no longer importable: {type(exc).__name__}: {exc}"
        ) from exc
    spec_obj = getattr(obj, "spec", None)
    if not isinstance(spec_obj, FlowSpec):
        raise RecoveryError(f"{entrypoint!r} is not a flow (found {type(obj).__name__})")
    return spec_obj


def recorded_parameters(run: FlowRun) -> dict[str, Any]:
    """The parameters a run was called with, decoded type-faithfully when recorded so."""
    if run.parameters_blob is not None:
        from millstream._engine.results.refs import decode

        try:
            value = decode(run.parameters_blob)
        except Exception as exc:
            raise RecoveryError(f"its recorded parameters cannot be decoded ({exc})") from exc
        if isinstance(value, dict):
            return value
    if not isinstance(run.parameters, dict):
        raise RecoveryError("its recorded parameters are not a mapping")
    return dict(run.parameters)


async def mark_unresumable(store: Store, run: FlowRun, reason: str) -> None:
    """Record that a crashed run cannot be resumed, and why."""
    state = Crashed(message=f"Flow run cannot be resumed: {reason}")
    state.state_details.flow_run_id = run.id
    run.state = state
    run.end_time = state.timestamp
    store.put_flow_run_state(run, state)
    await store.flush()


async def find_orphans(
    store: Store, lease_seconds: float, live_here: set[uuid.UUID]
) -> list[FlowRun]:
    """Top-level runs that are not final and whose owner is gone, oldest first."""
    runs = await store.read_recoverable_flow_runs()
    return [r for r in runs if is_orphan(r, lease_seconds, live_here)]


def lease_expired_before(lease_seconds: float) -> dt.datetime:
    """Heartbeats older than this mean the owner is gone."""
    return now() - dt.timedelta(seconds=lease_seconds)


async def recover_all(
    store: Store,
    *,
    lease_seconds: float,
    executor: Any,
    live_here: set[uuid.UUID],
    deployment_ids: set[uuid.UUID] | None = None,
) -> RecoveryReport:
    """Resume every orphaned top-level flow run of ``store``, one after another.

    ``executor`` runs sync flow bodies (see ``bridge.executors``). A run whose flow cannot be
    imported any more is marked Crashed, saying why.
    """

    report = RecoveryReport()
    for run in await find_orphans(store, lease_seconds, live_here):
        if deployment_ids is not None and run.deployment_id not in deployment_ids:
            continue
        try:
            await _recover_one(store, run, executor, report)
        except Exception as exc:
            # One run that cannot be resumed never keeps the others from being recovered.
            logger.error("Recovering flow run %s failed: %s: %s", run.id, type(exc).__name__, exc)
            report.skipped.append(run.id)
    return report


async def _recover_one(store: Store, run: FlowRun, executor: Any, report: RecoveryReport) -> None:
    if not await take_over(store, run):
        report.skipped.append(run.id)
        return
    await resume(store, run, executor, report)


async def resume(
    store: Store,
    run: FlowRun,
    executor: Any,
    report: RecoveryReport,
    claimed: FlowRun | None = None,
) -> None:
    """Run a run this process claimed on to its end (``report.resumed``), or mark it Crashed
    when its flow or its parameters cannot be loaded any more (``report.crashed``)."""
    try:
        spec = load_flow_spec(run.entrypoint)
        parameters = recorded_parameters(run)
    except RecoveryError as exc:
        await mark_unresumable(store, run, str(exc))
        report.crashed.append(run.id)
        return
    await run_flow(spec, parameters, executor=executor, flow_run_id=run.id, claimed=claimed)
    report.resumed.append(run.id)
