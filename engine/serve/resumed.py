"""Continuing resumed suspended flow runs that no deployment's worker serves (``recover``).

A suspended run of a deployment is Scheduled again on resume and a worker serving the
deployment claims it like any due run; one without a deployment is claimed here.
"""

from __future__ import annotations

import os
from typing import Any

from millstream._engine.model.states import now
from millstream._engine.serve.recovery import RecoveryReport, resume
from millstream._engine.store import HOSTNAME, Store


async def continue_resumed(store: Store, executor: Any, report: RecoveryReport) -> None:
    """Run every resumed suspended run (without a deployment) to its end, in this process."""
    await store.flush()
    for run in store.claim_resumed_runs(os.getpid(), HOSTNAME, now()):
        await resume(store, run, executor, report, claimed=run)
