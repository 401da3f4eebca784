"""Deployments in the database: registering them, creating their scheduled flow runs, and
claiming due runs for a worker (one conditional UPDATE … RETURNING per claim)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sqlite3
import uuid
from typing import Any

import msgspec

from millstream._engine.exceptions import ObjectNotFound, ParameterTypeError
from millstream._engine.model.ids import new_id
from millstream._engine.model.records import FlowRun
from millstream._engine.model.states import Scheduled, now
from millstream._engine.serve.schedules import Schedule
from millstream._engine.store.sqlite import (
    HOSTNAME,
    Q,
    Store,
    _flow_run_row,
    _history_entry,
    _lines_encoder,
    _parse_ts,
    _ts,
    db_id,
    encode_json,
    flow_run_from_row,
)

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

    @property
    def full_name(self) -> str:
        """``flow-name/deployment-name``."""
        return f"{self.flow_name}/{self.name}"


def deployment_id_for(flow_name: str, name: str) -> uuid.UUID:
    """A deployment's id: stable for a flow and name, so re-applying updates it in place."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"millstream:deployment:{flow_name}/{name}")


def _from_row(row: sqlite3.Row) -> DeploymentRecord:
    return DeploymentRecord(
        id=uuid.UUID(row["id"]),
        name=row["name"],
        flow_name=row["flow_name"],
        entrypoint=row["entrypoint"],
        description=row["description"],
        version=row["version"],
        tags=msgspec.json.decode(row["tags"]),
        parameters=msgspec.json.decode(row["parameters"]),
        parameter_schema=msgspec.json.decode(row["parameter_schema"])
        if row["parameter_schema"]
        else None,
        enforce_parameter_schema=bool(row["enforce_parameter_schema"]),
        paused=bool(row["paused"]),
        schedules=_schedules_decoder.decode(row["schedules"]),
        created=_parse_ts(row["created"]),
        updated=_parse_ts(row["updated"]),
    )


async def apply(store: Store, record: DeploymentRecord, parameters_blob: bytes | None) -> uuid.UUID:
    """Create or update a deployment; returns its id."""
    stamp = _ts(now())

    def write(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO deployment (id, name, flow_name, entrypoint, description, version, tags, "
            "parameters, parameters_blob, parameter_schema, enforce_parameter_schema, paused, "
            "schedules, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET entrypoint = excluded.entrypoint, "
            "description = excluded.description, version = excluded.version, "
            "tags = excluded.tags, parameters = excluded.parameters, "
            "parameters_blob = excluded.parameters_blob, "
            "parameter_schema = excluded.parameter_schema, "
            "enforce_parameter_schema = excluded.enforce_parameter_schema, "
            "paused = excluded.paused, schedules = excluded.schedules, updated = excluded.updated",
            (
                record.id.hex,
                record.name,
                record.flow_name,
                record.entrypoint,
                record.description,
                record.version,
                encode_json(record.tags),
                encode_json(record.parameters),
                parameters_blob,
                encode_json(record.parameter_schema) if record.parameter_schema else None,
                int(record.enforce_parameter_schema),
                int(record.paused),
                msgspec.json.encode(record.schedules).decode(),
                stamp,
                stamp,
            ),
        )

    await asyncio.wrap_future(store.put_call(write))
    return record.id


async def read(store: Store, name_or_id: str | uuid.UUID) -> DeploymentRecord:
    """A deployment by id or by ``flow-name/deployment-name``; ``ObjectNotFound`` otherwise."""
    text = str(name_or_id)
    if "/" in text:
        flow_name, _, name = text.partition("/")
        rows = await store.fetchall_sql(
            "SELECT * FROM deployment WHERE flow_name = ? AND name = ?", (flow_name, name)
        )
    else:
        try:
            key = db_id(text)
        except ObjectNotFound:
            raise ObjectNotFound(
                f"Deployment {text!r} not found: give its id or 'flow-name/deployment-name'"
            ) from None
        rows = await store.fetchall_sql("SELECT * FROM deployment WHERE id = ?", (key,))
    if not rows:
        raise ObjectNotFound(f"Deployment {text!r} not found in {store.path}")
    return _from_row(rows[0])


async def read_all(
    store: Store, limit: int | None = None, offset: int = 0
) -> list[DeploymentRecord]:
    """Every deployment, by flow and name."""
    rows = await store.fetchall_sql(
        "SELECT * FROM deployment ORDER BY flow_name, name LIMIT ? OFFSET ?",
        (-1 if limit is None else limit, offset),
    )
    return [_from_row(r) for r in rows]


async def set_paused(store: Store, deployment_ids: list[uuid.UUID], paused: bool) -> None:
    """Pause or resume the schedules of deployments."""

    def write(conn: sqlite3.Connection) -> None:
        conn.executemany(
            "UPDATE deployment SET paused = ? WHERE id = ?",
            [(int(paused), i.hex) for i in deployment_ids],
        )

    await asyncio.wrap_future(store.put_call(write))


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
    history = _lines_encoder.encode_lines([_history_entry(state)]).decode()
    row = _flow_run_row(run, state, history, None)
    insert = Q["upsert_flow_run"].split(" ON CONFLICT")[0] + " ON CONFLICT DO NOTHING"

    def write(conn: sqlite3.Connection) -> None:
        conn.execute(insert, row)

    await asyncio.wrap_future(store.put_call(write))
    existing = await store.read_flow_run(run_id)
    return existing


def scheduled_run_id(deployment_id: uuid.UUID, when: dt.datetime) -> uuid.UUID:
    """The id of a deployment's run for one schedule time: the same in every worker, so a
    due time creates its run once however many workers see it."""
    return uuid.uuid5(deployment_id, f"schedule:{_ts(when)}")


CLAIM_SQL = """
UPDATE flow_run SET state_type = 'PENDING', state_name = 'Pending', pid = ?, hostname = ?,
    heartbeat = ?, updated = ?
WHERE id = (
    SELECT id FROM flow_run
    WHERE state_type = 'SCHEDULED' AND deployment_id IN ({marks})
        AND coalesce(expected_start_time, created) <= ?
    ORDER BY coalesce(expected_start_time, created) LIMIT 1
) AND state_type = 'SCHEDULED'
RETURNING *
"""


async def claim_next(store: Store, deployment_ids: list[uuid.UUID]) -> FlowRun | None:
    """Take the oldest due Scheduled run of these deployments for this process, or None."""
    if not deployment_ids:
        return None
    stamp = _ts(now())
    sql = CLAIM_SQL.format(marks=", ".join("?" * len(deployment_ids)))
    params = (os.getpid(), HOSTNAME, stamp, stamp, *[i.hex for i in deployment_ids], stamp)

    def claim(conn: sqlite3.Connection) -> sqlite3.Row | None:
        conn.row_factory = sqlite3.Row
        try:
            row: sqlite3.Row | None = conn.execute(sql, params).fetchone()
        finally:
            conn.row_factory = None
        return row

    row = await asyncio.wrap_future(store.put_call(claim))
    return flow_run_from_row(row) if row is not None else None
