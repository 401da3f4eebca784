"""Continuing resumed suspended flow runs that no deployment's worker serves (``recover``).

A suspended run of a deployment is Scheduled again on resume and a worker serving the
deployment claims it like any due run; one without a deployment is claimed here.
"""

from __future__ import annotations

import os
from typing import Any

from millstream._engine.exceptions import RecoveryError
from millstream._engine.model.states import now
from millstream._engine.orchestrate.flow_run import run_flow
from millstream._engine.serve.recovery import (
    RecoveryReport,
    load_flow_spec,
    mark_unresumable,
    recorded_parameters,
)
from millstream._engine.store import HOSTNAME, Store


async def continue_resumed(store: Store, executor: Any, report: RecoveryReport) -> None:
    """Run every resumed suspended run (without a deployment) to its end, in this process."""
    await store.flush()
    for run in store.claim_resumed_runs(os.getpid(), HOSTNAME, now()):
        try:
            spec = load_flow_spec(run.entrypoint)
            parameters = recorded_parameters(run)
        except RecoveryError as exc:
            await mark_unresumable(store, run, str(exc))
            report.crashed.append(run.id)
            continue
        await run_flow(spec, parameters, executor=executor, flow_run_id=run.id, claimed=run)
        report.resumed.append(run.id)
