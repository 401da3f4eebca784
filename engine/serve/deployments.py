"""Deployments: registering them, creating their scheduled flow runs, and claiming due runs
for a worker (the store does each in one statement)."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from typing import Any

import msgspec

from millstream._engine.exceptions import ObjectNotFound, ParameterTypeError
from millstream._engine.model.ids import new_id
from millstream._engine.model.records import FlowRun
from millstream._engine.model.states import Scheduled, now
from millstream._engine.serve.schedules import Schedule
from millstream._engine.store import HOSTNAME, Store
from millstream._engine.store.rows import ts_text

_schedules_decoder = msgspec.json.Decoder(list[Schedule])


class DeploymentRecord(msgspec.Struct, kw_only=True):
    """A deployment: a flow, its default parameters and schedules, under a name."""

    id: uuid.UUID
    name: str
    flow_name: str
    entrypoint: str | None = None
    description: str | None = None
    version: str | None = None
    tags: list[str] = msgspec.field(default_factory=list)
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)
    parameter_schema: dict[str, Any] | None = None
    enforce_parameter_schema: bool = False
    paused: bool = False
    schedules: list[Schedule] = msgspec.field(default_factory=list)
    created: dt.datetime | None = None
    updated: dt.datetime | None = None
    # How many runs of this deployment may run at once (None: no limit), and what a run over
    # the limit does: "ENQUEUE" (wait, Prefect's default) or "CANCEL_NEW".
    concurrency_limit: int | None = None
    collision_strategy: str | None = None

    @property
    def full_name(self) -> str:
        """``flow-name/deployment-name``."""
        return f"{self.flow_name}/{self.name}"


def deployment_id_for(flow_name: str, name: str) -> uuid.UUID:
    """A deployment's id: stable for a flow and name, so re-applying updates it in place."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"millstream:deployment:{flow_name}/{name}")


def _from_fields(fields: dict[str, Any]) -> DeploymentRecord:
    schedules = _schedules_decoder.decode(fields["schedules"])
    return DeploymentRecord(**{**fields, "schedules": schedules})


async def apply(store: Store, record: DeploymentRecord, parameters_blob: bytes | None) -> uuid.UUID:
    """Create or update a deployment; returns its id."""
    fields = msgspec.structs.asdict(record)
    await store.upsert_deployment(
        fields, msgspec.json.encode(record.schedules).decode(), parameters_blob
    )
    return record.id


async def read(store: Store, name_or_id: str | uuid.UUID) -> DeploymentRecord:
    """A deployment by id or by ``flow-name/deployment-name``; ``ObjectNotFound`` otherwise."""
    text = str(name_or_id)
    if "/" in text:
        flow_name, _, name = text.partition("/")
        fields = await store.read_deployment(full_name=(flow_name, name))
    else:
        try:
            key = uuid.UUID(text)
        except ValueError:
            raise ObjectNotFound(
                f"Deployment {text!r} not found: give its id or 'flow-name/deployment-name'"
            ) from None
        fields = await store.read_deployment(key)
    if fields is None:
        raise ObjectNotFound(f"Deployment {text!r} not found in {store.path}")
    return _from_fields(fields)


async def read_all(
    store: Store, limit: int | None = None, offset: int = 0
) -> list[DeploymentRecord]:
    """Every deployment, by flow and name."""
    return [_from_fields(f) for f in await store.read_deployments(limit, offset)]


async def set_paused(store: Store, deployment_ids: list[uuid.UUID], paused: bool) -> None:
    """Pause or resume the schedules of deployments."""
    await store.set_deployments_paused(deployment_ids, paused)


def merged_parameters(
    deployment: DeploymentRecord, parameters: dict[str, Any] | None, validate: Any
) -> dict[str, Any]:
    """Deployment defaults merged with the given parameters, validated when it enforces its
    schema (``validate(parameters)`` raises ``ParameterTypeError``)."""
    merged = {**deployment.parameters, **(parameters or {})}
    if deployment.enforce_parameter_schema and validate is not None:
        return dict(validate(merged))
    if deployment.parameter_schema:
        unknown = set(merged) - set(deployment.parameter_schema.get("properties", {}))
        if unknown and deployment.enforce_parameter_schema:
            raise ParameterTypeError(
                f"Deployment {deployment.full_name!r} has no parameter(s) {sorted(unknown)}"
            )
    return merged


async def create_flow_run(
    store: Store,
    deployment: DeploymentRecord,
    flow_id: uuid.UUID,
    *,
    parameters: dict[str, Any],
    parameters_blob: bytes | None,
    scheduled_time: dt.datetime | None,
    flow_run_name: str | None,
    tags: list[str] | None,
    idempotency_key: str | None,
    name_factory: Any,
    parent_flow_run_id: uuid.UUID | None = None,
    run_id: uuid.UUID | None = None,
) -> FlowRun:
    """A Scheduled flow run of ``deployment`` (the existing one for a repeated idempotency key)."""
    when = scheduled_time or now()
    if when.tzinfo is None:
        raise ValueError(f"scheduled_time must be timezone-aware, got {when!r}")
    # A new id cannot exist already: only a derived one (a schedule time, an idempotency key)
    # may name a run made before, which is then read back and returned.
    fresh = run_id is None and idempotency_key is None
    if run_id is None:
        run_id = (
            uuid.uuid5(deployment.id, f"idempotency:{idempotency_key}")
            if idempotency_key is not None
            else new_id()
        )
    state = Scheduled(scheduled_time=when)
    state.state_details.flow_run_id = run_id
    run = FlowRun(
        id=run_id,
        name=flow_run_name or name_factory(),
        flow_id=flow_id,
        flow_name=deployment.flow_name,
        flow_version=deployment.version,
        parameters=parameters,
        tags=sorted({*deployment.tags, *(tags or [])}),
        deployment_id=deployment.id,
        idempotency_key=f"{deployment.id.hex}:{idempotency_key}" if idempotency_key else None,
        entrypoint=deployment.entrypoint,
        parent_flow_run_id=parent_flow_run_id,
        root_flow_run_id=parent_flow_run_id or run_id,
        state=state,
        expected_start_time=when,
        created=state.timestamp,
        parameters_blob=parameters_blob,
    )
    await store.insert_scheduled_flow_run(run, state)
    if fresh:
        return run
    existing = await store.read_flow_run(run_id)
    return existing


def scheduled_run_id(deployment_id: uuid.UUID, when: dt.datetime) -> uuid.UUID:
    """The id of a deployment's run for one schedule time: the same in every worker, so a
    due time creates its run once however many workers see it."""
    return uuid.uuid5(deployment_id, f"schedule:{ts_text(when)}")


async def claim_next(store: Store, deployment_ids: list[uuid.UUID]) -> FlowRun | None:
    """Take the oldest due Scheduled run of these deployments for this process, or None."""
    if not deployment_ids:
        return None
    return await store.claim_due_flow_run(deployment_ids, os.getpid(), HOSTNAME, now())
