"""Deployment concurrency limits in the worker: a run starts only with a slot of its
deployment's limit (a global limit named ``deployment:<id>``, shared by every worker).

``ENQUEUE``: a due run that finds the limit full stays Scheduled until a slot frees (a run
finishing in this process wakes the worker at once; elsewhere, the next poll). ``CANCEL_NEW``:
it is Cancelled instead.
"""

from __future__ import annotations

import uuid

from millstream._engine.exceptions import AcquireConcurrencySlotTimeoutError
from millstream._engine.limits import Grant, acquire, release_blocking
from millstream._engine.model.limits import DEPLOYMENT_PREFIX
from millstream._engine.model.records import FlowRun
from millstream._engine.model.states import Cancelled, StateType
from millstream._engine.serve import deployments
from millstream._engine.serve.control import change_state
from millstream._engine.store import Store

ENQUEUE, CANCEL_NEW = "ENQUEUE", "CANCEL_NEW"


def limit_name(deployment_id: uuid.UUID) -> str:
    """The global limit that holds a deployment's concurrency limit."""
    return f"{DEPLOYMENT_PREFIX}{deployment_id}"


def apply_limit(store: Store, deployment_id: uuid.UUID, limit: int | None) -> None:
    """Record a deployment's limit (None: it has none), keeping the slots held now."""
    name = limit_name(deployment_id)
    exists = bool(store.read_limits([name]))
    if limit is None:
        if exists:
            store.delete_limit(name)
    elif exists:
        store.update_limit(name, limit=limit)
    else:
        store.create_limit(name, limit, True, 0.0)


async def _slot(store: Store, deployment_id: uuid.UUID) -> Grant | None:
    try:
        return await acquire(store, [limit_name(deployment_id)], 1, timeout=0)
    except AcquireConcurrencySlotTimeoutError:
        return None


async def claim_limited(
    store: Store, deployment_id: uuid.UUID, strategy: str
) -> tuple[FlowRun, Grant] | None:
    """Claim the next due run of a limited deployment together with a slot, or None (no due
    run, or the limit is full: with ``CANCEL_NEW`` the due run is then Cancelled)."""
    grant = await _slot(store, deployment_id)
    if grant is None:
        if strategy == CANCEL_NEW:
            await _cancel_new(store, deployment_id)
        return None
    run = await deployments.claim_next(store, [deployment_id])
    if run is None:
        release_blocking(grant)
        return None
    return run, grant


async def _cancel_new(store: Store, deployment_id: uuid.UUID) -> None:
    while True:
        run = await deployments.claim_next(store, [deployment_id])
        if run is None:
            return
        cancelled = Cancelled(
            message="Deployment concurrency limit reached (collision strategy CANCEL_NEW)"
        )
        await change_state(store, run.id, cancelled, [StateType.PENDING])


def release(grant: Grant) -> None:
    """Give a run's deployment slot back (when the run ends, however it ends)."""
    release_blocking(grant)
