"""Client writes to flow runs: ``set_flow_run_state`` and ``update_flow_run``, done in-process
on the database (the async mixin of ``PrefectClient`` and its blocking twin)."""

from __future__ import annotations

import uuid
from typing import Any

from millstream._engine.exceptions import NotSupportedError, ObjectNotFound
from millstream._engine.model.states import State, StateType
from millstream._engine.results.refs import journal
from millstream._engine.store import Store
from millstream.client.schemas.responses import (
    OrchestrationResult,
    SetStateStatus,
    StateAcceptDetails,
)

_EVERY_TYPE = tuple(StateType)


def _run_id(flow_run_id: uuid.UUID | str) -> uuid.UUID:
    try:
        return flow_run_id if isinstance(flow_run_id, uuid.UUID) else uuid.UUID(str(flow_run_id))
    except ValueError:
        raise ObjectNotFound(f"Flow run {str(flow_run_id)!r} not found: not a UUID") from None


class FlowRunWrites:
    """``set_flow_run_state`` and ``update_flow_run`` (async)."""

    _store: Store

    async def set_flow_run_state(
        self, flow_run_id: uuid.UUID | str, state: State, force: bool = False
    ) -> OrchestrationResult:
        """Record ``state`` as the flow run's current state (appended to its history).

        As Prefect's local server does for flow runs, the state is accepted whatever the
        run's current state (``force`` is accepted for compatibility). A run in progress in
        some process writes its own next states after it; ``Cancelling`` asks that process
        to stop the run, as ``cancel_flow_run`` does.
        """
        run_id = _run_id(flow_run_id)
        if not isinstance(state, State):
            raise TypeError(f"set_flow_run_state() needs a State, got {state!r}")
        recorded = state.copy()
        recorded.state_details.flow_run_id = run_id
        if not await self._store.set_flow_run_state_if(run_id, recorded, _EVERY_TYPE):
            await self._store.read_flow_run(run_id)  # raises ObjectNotFound for a missing run
            raise ObjectNotFound(f"Flow run {run_id} has no state yet to move from")
        return OrchestrationResult(
            state=recorded, status=SetStateStatus.ACCEPT, details=StateAcceptDetails()
        )

    async def update_flow_run(
        self,
        flow_run_id: uuid.UUID | str,
        flow_version: str | None = None,
        parameters: dict[str, Any] | None = None,
        name: str | None = None,
        tags: list[str] | None = None,
        empirical_policy: Any = None,
        infrastructure_pid: str | None = None,
        job_variables: dict[str, Any] | None = None,
    ) -> None:
        """Replace the given fields of a flow run's record (name, tags, parameters,
        flow_version); raises ObjectNotFound for a missing run."""
        server_only = {
            "empirical_policy": empirical_policy,
            "infrastructure_pid": infrastructure_pid,
            "job_variables": job_variables,
        }
        given = [k for k, v in server_only.items() if v is not None]
        if given:
            raise NotSupportedError(
                f"update_flow_run({', '.join(given)}=...): retry policies, infrastructure and "
                "job variables belong to Prefect's server and workers; Millstream updates "
                "name, tags, parameters and flow_version"
            )
        run_id = _run_id(flow_run_id)
        changed = await self._store.update_flow_run_fields(
            run_id,
            name=name,
            flow_version=flow_version,
            parameters=dict(parameters) if parameters is not None else None,
            parameters_blob=journal(parameters) if parameters is not None else None,
            tags=list(tags) if tags is not None else None,
        )
        if not changed:
            raise ObjectNotFound(f"Flow run {run_id} not found in {self._store.path}")

    async def set_flow_run_name(self, flow_run_id: uuid.UUID | str, name: str) -> None:
        """Rename a flow run."""
        await self.update_flow_run(flow_run_id, name=name)


__all__ = ["FlowRunWrites"]
