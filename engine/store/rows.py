"""Records to database rows and back: ids, timestamps, JSON fields and state histories."""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid
from typing import Any

import msgspec

from millstream._engine.exceptions import ObjectNotFound
from millstream._engine.model.records import FlowRecord, FlowRun, LogRecord, TaskRun
from millstream._engine.model.states import State, StateDetails, StateType

_UTC = dt.UTC
_encode = msgspec.json.encode
_json_encoder = msgspec.json.Encoder(enc_hook=lambda obj: _short(repr(obj)))
_details_encoder = msgspec.json.Encoder()
_EMPTY_DETAILS = StateDetails()


def _short(text: str, limit: int = 2_000) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def encode_json(value: Any) -> str:
    """JSON text of a value; what JSON cannot hold is stored as its (truncated) repr."""
    try:
        return _json_encoder.encode(value).decode()
    except (TypeError, ValueError, OverflowError):
        return _json_encoder.encode(_short(repr(value))).decode()


def ts(value: dt.datetime | None) -> str | None:
    """A timestamp as fixed-width UTC text (``...T12:00:00.000000Z``), so text order is time
    order; msgspec formats it in C, several times faster than ``isoformat``."""
    if value is None:
        return None
    if value.tzinfo is not _UTC:
        if value.tzinfo is None:
            raise ValueError(f"Timestamps must be timezone-aware, got {value!r}")
        value = value.astimezone(_UTC)
    text = _encode(value)
    if len(text) == 22:  # no fraction is printed for a whole second
        return text[1:-2].decode() + ".000000Z"
    return text[1:-1].decode()


def parse_ts(value: str | None) -> dt.datetime | None:
    """A stored timestamp back as an aware datetime (None stays None)."""
    return dt.datetime.fromisoformat(value) if value else None


def db_id(value: uuid.UUID | str | None) -> str | None:
    """An id as stored: 32 hex digits (accepts a UUID or any string form of one)."""
    if value is None:
        return None
    if isinstance(value, uuid.UUID):
        return value.hex
    try:
        return uuid.UUID(str(value)).hex
    except ValueError:
        raise ObjectNotFound(f"{value!r} is not a valid id") from None


def _id(value: uuid.UUID | None) -> str | None:
    return value.hex if value is not None else None


def parse_id(value: str | None) -> uuid.UUID | None:
    """A stored id back as a UUID (None stays None)."""
    return uuid.UUID(value) if value else None


def details_json(details: StateDetails) -> str | None:
    """State details as stored (None when they are all defaults)."""
    if details == _EMPTY_DETAILS:
        return None
    return _details_encoder.encode(details).decode()


class HistoryEntry(msgspec.Struct, array_like=True):
    """One line of a run's state history (msgspec writes ids and timestamps in C)."""

    id: uuid.UUID
    type: str
    name: str | None
    message: str | None
    timestamp: dt.datetime
    details: StateDetails | None


_lines_encoder = msgspec.json.Encoder()
_history_decoder = msgspec.json.Decoder(HistoryEntry)


def history_entry(state: State) -> HistoryEntry:
    """A state as one history entry."""
    details = state.state_details
    return HistoryEntry(
        state.id,
        state.type,  # a StrEnum member is a str: no need for the slow .value lookup
        state.name,
        state.message,
        state.timestamp,
        details if details != _EMPTY_DETAILS else None,
    )


def encode_history(entries: list[HistoryEntry]) -> str:
    """History entries as the text appended to a run's history column."""
    return _lines_encoder.encode_lines(entries).decode()


def parse_history(text: str) -> list[State]:
    """The states recorded in a run's history column, oldest first."""
    states = []
    for line in text.splitlines():
        if not line:
            continue
        entry = _history_decoder.decode(line)
        states.append(
            State(
                id=entry.id,
                type=StateType(entry.type),
                name=entry.name,
                message=entry.message,
                timestamp=entry.timestamp,
                state_details=entry.details or StateDetails(),
            )
        )
    return states


def flow_run_row(run: FlowRun, state: State, history: str, result: bytes | None) -> tuple[Any, ...]:
    """The ``upsert_flow_run`` parameters of a flow run in ``state``."""
    now = ts(state.timestamp)
    return (
        run.id.hex,
        run.name,
        run.flow_id.hex,
        run.flow_name,
        run.flow_version,
        encode_json(run.parameters),
        encode_json(run.tags),
        _id(run.parent_task_run_id),
        _id(run.parent_flow_run_id),
        _id(run.root_flow_run_id),
        _id(run.deployment_id),
        run.idempotency_key,
        run.entrypoint,
        run.run_count,
        state.id.hex,
        state.type,  # a StrEnum member is a str: no need for the slow .value lookup
        state.name,
        state.message,
        now,
        details_json(state.state_details),
        ts(run.start_time),
        ts(run.end_time),
        ts(run.expected_start_time),
        ts(run.created) or now,
        now,
        run.pid,
        run.hostname,
        ts(run.heartbeat),
        run.parameters_blob,
        history,
        result,
    )


def task_run_row(run: TaskRun, state: State, history: str, result: bytes | None) -> tuple[Any, ...]:
    """The ``upsert_task_run`` parameters of a task run in ``state``."""
    now = ts(state.timestamp)
    return (
        run.id.hex,
        _id(run.flow_run_id),
        run.name,
        run.task_key,
        run.task_name,
        run.dynamic_key,
        run.task_version,
        run.cache_key,
        ts(run.cache_expiration),
        encode_json(run.parameters),
        encode_json(run.tags),
        run.run_count,
        state.id.hex,
        state.type,  # a StrEnum member is a str: no need for the slow .value lookup
        state.name,
        state.message,
        now,
        details_json(state.state_details),
        ts(run.start_time),
        # The final state's timestamp is the end time: format it once.
        now if run.end_time is state.timestamp else ts(run.end_time),
        ts(run.expected_start_time),
        ts(run.created) or now,
        now,
        history,
        result,
        run.code_fingerprint,
    )


def log_row(item: LogRecord) -> tuple[Any, ...]:
    """The ``insert_log`` parameters of a log line."""
    return (
        _id(item.flow_run_id),
        _id(item.task_run_id),
        item.level,
        item.name,
        item.message,
        ts(item.timestamp),
    )


def flow_row(item: FlowRecord) -> tuple[Any, ...]:
    """The ``upsert_flow`` parameters of a flow."""
    return (_id(item.id), item.name, ts(item.created))


def _row_state(row: sqlite3.Row) -> State | None:
    if row["state_type"] is None:
        return None
    data: Any = None
    if "result" in row.keys() and row["result"] is not None:
        from millstream._engine.results.refs import StoredResult

        # The recorded result, decoded when state.result() asks for it.
        data = StoredResult(row["result"])
    return State(
        id=uuid.UUID(row["state_id"]),
        type=StateType(row["state_type"]),
        name=row["state_name"],
        message=row["state_message"],
        timestamp=dt.datetime.fromisoformat(row["state_timestamp"]),
        data=data,
        state_details=msgspec.json.decode(row["state_details"] or "{}", type=StateDetails),
    )


def flow_run_from_row(row: sqlite3.Row) -> FlowRun:
    """A ``FlowRun`` from a ``flow_run`` row."""
    return FlowRun(
        id=uuid.UUID(row["id"]),
        name=row["name"],
        flow_id=uuid.UUID(row["flow_id"]),
        flow_name=row["flow_name"],
        flow_version=row["flow_version"],
        parameters=msgspec.json.decode(row["parameters"]),
        tags=msgspec.json.decode(row["tags"]),
        parent_task_run_id=parse_id(row["parent_task_run_id"]),
        parent_flow_run_id=parse_id(row["parent_flow_run_id"]),
        root_flow_run_id=parse_id(row["root_flow_run_id"]),
        deployment_id=parse_id(row["deployment_id"]),
        idempotency_key=row["idempotency_key"],
        entrypoint=row["entrypoint"],
        run_count=row["run_count"],
        state=_row_state(row),
        start_time=parse_ts(row["start_time"]),
        end_time=parse_ts(row["end_time"]),
        expected_start_time=parse_ts(row["expected_start_time"]),
        created=parse_ts(row["created"]),
        pid=row["pid"],
        hostname=row["hostname"],
        heartbeat=parse_ts(row["heartbeat"]),
        parameters_blob=row["parameters_blob"],
    )


def task_run_from_row(row: sqlite3.Row) -> TaskRun:
    """A ``TaskRun`` from a ``task_run`` row."""
    return TaskRun(
        id=uuid.UUID(row["id"]),
        flow_run_id=parse_id(row["flow_run_id"]),
        name=row["name"],
        task_key=row["task_key"],
        task_name=row["task_name"],
        dynamic_key=row["dynamic_key"],
        task_version=row["task_version"],
        cache_key=row["cache_key"],
        cache_expiration=parse_ts(row["cache_expiration"]),
        parameters=msgspec.json.decode(row["parameters"]),
        tags=msgspec.json.decode(row["tags"]),
        run_count=row["run_count"],
        state=_row_state(row),
        start_time=parse_ts(row["start_time"]),
        end_time=parse_ts(row["end_time"]),
        expected_start_time=parse_ts(row["expected_start_time"]),
        created=parse_ts(row["created"]),
        code_fingerprint=row["code_fingerprint"],
    )


def flow_from_row(row: sqlite3.Row) -> FlowRecord:
    """A ``FlowRecord`` from a ``flow`` row."""
    return FlowRecord(id=uuid.UUID(row["id"]), name=row["name"], created=parse_ts(row["created"]))


def log_from_row(row: sqlite3.Row) -> LogRecord:
    """A ``LogRecord`` from a ``log`` row."""
    timestamp = parse_ts(row["timestamp"])
    assert timestamp is not None  # the column is NOT NULL
    return LogRecord(
        id=row["id"],
        flow_run_id=parse_id(row["flow_run_id"]),
        task_run_id=parse_id(row["task_run_id"]),
        level=row["level"],
        name=row["name"],
        message=row["message"],
        timestamp=timestamp,
    )


def variable_fields(row: sqlite3.Row) -> tuple[str, Any, list[str]]:
    """Name, value and tags of a ``variable`` row (value and tags are stored as JSON)."""
    return row["name"], msgspec.json.decode(row["value"]), msgspec.json.decode(row["tags"])


def deployment_fields(row: sqlite3.Row) -> dict[str, Any]:
    """A ``deployment`` row as keyword arguments of a deployment record; ``schedules`` stays
    JSON text (its types belong to serving)."""
    schema = row["parameter_schema"]
    return {
        "id": uuid.UUID(row["id"]),
        "name": row["name"],
        "flow_name": row["flow_name"],
        "entrypoint": row["entrypoint"],
        "description": row["description"],
        "version": row["version"],
        "tags": msgspec.json.decode(row["tags"]),
        "parameters": msgspec.json.decode(row["parameters"]),
        "parameter_schema": msgspec.json.decode(schema) if schema else None,
        "enforce_parameter_schema": bool(row["enforce_parameter_schema"]),
        "paused": bool(row["paused"]),
        "schedules": row["schedules"],
        "created": parse_ts(row["created"]),
        "updated": parse_ts(row["updated"]),
    }
