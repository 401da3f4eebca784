"""One flow run id, one body: a caller-given ``flow_run_id`` is claimed atomically.

Two processes (or threads) that start the same new flow run id at once race for one insert;
the one whose row lands runs the body. The others wait for that run to finish and return its
outcome, or take the run over (a claim raising its lease epoch) if its owner died.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

from millstream._engine.bridge.pids import pid_alive
from millstream._engine.model.records import FlowRun
from millstream._engine.model.spec import FlowSpec
from millstream._engine.model.states import Pending, now
from millstream._engine.store import HOSTNAME, Store

# How often a process that lost the race for a flow run id looks at the winner's run.
WAIT_POLL_SECONDS = 0.1


async def claim_or_wait(
    spec: FlowSpec,
    parameters: dict[str, Any],
    store: Store,
    flow_run_id: uuid.UUID,
    lease_seconds: float,
) -> FlowRun | None:
    """None when this call made the run (it runs the body); else the run as recorded, once
    it is final (its outcome is the caller's) or taken over from a dead owner (resumed)."""
    from millstream._engine.orchestrate.flow_run import new_flow_run

    run = new_flow_run(spec, parameters, store, parent_flow_ctx=None, flow_run_id=flow_run_id)
    if await store.claim_new_flow_run(run, Pending()):
        return None
    return await wait_for_owner(store, flow_run_id, lease_seconds)


def owned_elsewhere(store: Store, run: FlowRun, lease_seconds: float) -> bool:
    """Whether an unfinished run is live in another process (or another thread of this one)."""
    if run.state is None or run.state.is_final():
        return False
    if run.id in store.live_runs:
        return True
    if run.hostname == HOSTNAME and run.pid == os.getpid():
        return False  # recorded by this process, not live in it: a previous life
    return not _owner_gone(run, lease_seconds)


async def take_or_wait(store: Store, run: FlowRun, lease_seconds: float) -> FlowRun:
    """An unfinished run found under a caller-given id: wait for its owner if it is live
    elsewhere, else take it over with one atomic claim (to resume it); a caller that loses
    that claim waits for the winner's outcome."""
    if run.state is None or run.state.is_final():
        return run
    if not owned_elsewhere(store, run, lease_seconds) and await take_over(store, run):
        return run
    return await wait_for_owner(store, run.id, lease_seconds)


async def wait_for_owner(store: Store, flow_run_id: uuid.UUID, lease_seconds: float) -> FlowRun:
    """The run once it is final (its owner's outcome), or once this process took it over from
    an owner that died or lost its lease (to resume it)."""
    while True:
        found = await store.read_flow_run_or_none(flow_run_id)
        if found is not None:
            if found.state is not None and found.state.is_final():
                return found
            if _owner_gone(found, lease_seconds) and await take_over(store, found):
                return found
        await asyncio.sleep(WAIT_POLL_SECONDS)


def _owner_gone(run: FlowRun, lease_seconds: float) -> bool:
    if run.hostname == HOSTNAME and run.pid is not None and not pid_alive(run.pid):
        return True
    beat = run.heartbeat or run.created
    return beat is None or (now() - beat).total_seconds() > lease_seconds


async def take_over(store: Store, run: FlowRun) -> bool:
    """Atomically take ownership of ``run`` from its gone owner, raising its lease epoch
    (False when someone else changed it first); ``run`` then names this process."""
    stamp = now()
    epoch = await store.claim_flow_run(run, os.getpid(), HOSTNAME, stamp)
    if epoch is None:
        return False
    run.pid, run.hostname, run.heartbeat, run.epoch = os.getpid(), HOSTNAME, stamp, epoch
    return True
