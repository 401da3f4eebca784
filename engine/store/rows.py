"""Records to database rows and back: ids, timestamps, JSON fields and state histories.

Rows are compact: ids are 16-byte BLOBs, times INTEGER microseconds since the epoch (UTC),
state details msgpack with the run's own id left out, and a run's state history a BLOB of
msgpack chunks (one appended per write of the row: a 4-byte length, then an array of
entries), so recording states costs one row write however many states a batch holds. The
current state's id, time and details are read from the history's last entry (the row keeps
its type, name and message as columns, for filters).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid
from typing import Any

import msgspec

from millstream._engine.exceptions import ObjectNotFound
from millstream._engine.model.records import FlowRecord, FlowRun, LogRecord, TaskRun
from millstream._engine.model.states import State, StateDetails, StateType
from millstream._engine.store.encoding import (
    MAX_LINE_CHARS,
    clean_text,
    decode_extra,
    encode_extra,
    log_message,
    pack_links,
    unpack_links,
)
from millstream._engine.store.encoding import encode_json as encode_json

_UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
_packer = msgspec.msgpack.Encoder(uuid_format="bytes")
_details_decoder = msgspec.msgpack.Decoder(StateDetails)
_EMPTY_DETAILS = StateDetails()
# Codes of state types as stored in histories: append only, never renumber.
_TYPES: tuple[StateType, ...] = (
    StateType.SCHEDULED,
    StateType.PENDING,
    StateType.RUNNING,
    StateType.COMPLETED,
    StateType.FAILED,
    StateType.CANCELLED,
    StateType.CRASHED,
    StateType.PAUSED,
    StateType.CANCELLING,
)
_CODES = {t: i for i, t in enumerate(_TYPES)}
_DEFAULT_NAMES = {t: State(type=t).name for t in _TYPES}


def ts(value: dt.datetime | None) -> int | None:
    """A timestamp as stored: integer microseconds since the epoch, UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"Timestamps must be timezone-aware, got {value!r}")
    return (value - _EPOCH) // _MICROSECOND


def ts_text(value: dt.datetime) -> str:
    """A timestamp as fixed-width UTC text (``...T12:00:00.000000Z``): the form that earlier
    versions stored, still used where ids are derived from times (they must not change)."""
    if value.tzinfo is None:
        raise ValueError(f"Timestamps must be timezone-aware, got {value!r}")
    text = msgspec.json.encode(value.astimezone(_UTC))
    if len(text) == 22:  # no fraction is printed for a whole second
        return text[1:-2].decode() + ".000000Z"
    return text[1:-1].decode()


def parse_ts(value: int | None) -> dt.datetime | None:
    """A stored timestamp back as an aware UTC datetime (None stays None)."""
    return _EPOCH + dt.timedelta(microseconds=value) if value is not None else None


def db_id(value: uuid.UUID | str | bytes | None) -> bytes | None:
    """An id as stored: 16 bytes (accepts a UUID, any string form of one, or a stored id)."""
    if value is None:
        return None
    return as_uuid(value).bytes


def as_uuid(value: uuid.UUID | str | bytes) -> uuid.UUID:
    """A UUID from a UUID, any string form of one, or a stored id; ``ObjectNotFound`` else."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        if isinstance(value, bytes):
            return uuid.UUID(bytes=value)
        return uuid.UUID(str(value))
    except ValueError:
        raise ObjectNotFound(f"{value!r} is not a valid id") from None


def _id(value: uuid.UUID | None) -> bytes | None:
    return value.bytes if value is not None else None


def parse_id(value: bytes | None) -> uuid.UUID | None:
    """A stored id back as a UUID (None stays None)."""
    return uuid.UUID(bytes=value) if value is not None else None


def encode_ids(values: list[uuid.UUID]) -> list[bytes]:
    """Ids as stored."""
    return [v.bytes for v in values]


def pack_details(details: StateDetails, own_id: uuid.UUID, field: str) -> bytes | None:
    """State details as stored for the run ``own_id``: None when they only name the run
    itself (in ``field``: the usual case), else a flag byte (1: the run's own id was left
    out) then msgpack of the rest (nothing when the rest is all defaults)."""
    named = getattr(details, field)
    # The engine puts the run's own id object there: ``is`` spares UUID.__eq__ (Python code).
    if named is own_id or named == own_id:
        details = msgspec.structs.replace(details, **{field: None})
        if details == _EMPTY_DETAILS:
            return None
        return b"\x01" + _packer.encode(details)
    if details == _EMPTY_DETAILS:
        return b""
    return b"\x00" + _packer.encode(details)


def unpack_details(blob: bytes | None, own_id: uuid.UUID, field: str) -> StateDetails:
    """``pack_details`` undone."""
    if blob is None:
        details = StateDetails()
        setattr(details, field, own_id)
        return details
    if not blob:
        return StateDetails()
    details = _details_decoder.decode(blob[1:])
    if blob[0] == 1:
        setattr(details, field, own_id)
    return details


class HistoryEntry(msgspec.Struct, array_like=True):
    """One state in a run's history: id, type code, name (None: the type's default name),
    message, time (microseconds) and details (``pack_details``)."""

    id: uuid.UUID
    code: int
    name: str | None
    message: str | None
    timestamp: int
    details: bytes | None


_history_decoder = msgspec.msgpack.Decoder(list[HistoryEntry])


def stored_name(state: State) -> str | None:
    """A state's name as stored in its run's row: None when it is its type's default name."""
    name = state.name
    return None if name == _DEFAULT_NAMES[state.type] else name


def default_names() -> dict[str, str]:
    """Each state type's default name, by type (for SQL that reads stored names)."""
    return {t.value: str(name) for t, name in _DEFAULT_NAMES.items()}


def history_entry(state: State, own_id: uuid.UUID, field: str) -> HistoryEntry:
    """A state of the run ``own_id`` as one history entry (``field``: ``"task_run_id"`` or
    ``"flow_run_id"``, where its details name the run)."""
    name = state.name
    return HistoryEntry(
        state.id,
        _CODES[state.type],
        None if name == _DEFAULT_NAMES[state.type] else name,
        state.message,
        (state.timestamp - _EPOCH) // _MICROSECOND,
        pack_details(state.state_details, own_id, field),
    )


def encode_history(entries: list[HistoryEntry]) -> bytes:
    """History entries as the chunk appended to a run's history column."""
    chunk = _packer.encode(entries)
    return len(chunk).to_bytes(4, "little") + chunk


def parse_history(blob: bytes, own_id: uuid.UUID, field: str) -> list[State]:
    """The states recorded in a run's history column, oldest first."""
    states: list[State] = []
    view = memoryview(blob)
    at = 0
    while at < len(view):
        size = int.from_bytes(view[at : at + 4], "little")
        states.extend(
            State(
                id=entry.id,
                type=_TYPES[entry.code],
                name=entry.name,
                message=entry.message,
                timestamp=_EPOCH + dt.timedelta(microseconds=entry.timestamp),
                state_details=unpack_details(entry.details, own_id, field),
            )
            for entry in _history_decoder.decode(view[at + 4 : at + 4 + size])
        )
        at += 4 + size
    return states


def flow_run_row(
    run: FlowRun, state: State, history: bytes, result: bytes | None
) -> tuple[Any, ...]:
    """The ``upsert_flow_run`` parameters of a flow run in ``state``."""
    now = (state.timestamp - _EPOCH) // _MICROSECOND
    return (
        run.id.bytes,
        run.name,
        run.flow_id.bytes,
        run.flow_name,
        run.flow_version,
        encode_json(run.parameters),
        encode_json(run.tags) if run.tags else "[]",
        _id(run.parent_task_run_id),
        _id(run.parent_flow_run_id),
        _id(run.root_flow_run_id),
        _id(run.deployment_id),
        run.idempotency_key,
        run.entrypoint,
        run.run_count,
        state.type,  # a StrEnum member is a str: no need for the slow .value lookup
        stored_name(state),
        state.message,
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


def task_run_row(
    run: TaskRun, state: State, history: bytes, result: bytes | None
) -> tuple[Any, ...]:
    """The ``upsert_task_run`` parameters of a task run in ``state``."""
    now = (state.timestamp - _EPOCH) // _MICROSECOND
    start = run.start_time
    return (
        run.id.bytes,
        _id(run.flow_run_id),
        run.name,
        run.task_key,
        run.task_name,
        run.dynamic_key,
        run.task_version,
        run.cache_key,
        ts(run.cache_expiration),
        encode_json(run.parameters),
        encode_json(run.tags) if run.tags else "[]",
        run.run_count,
        state.type,  # a StrEnum member is a str: no need for the slow .value lookup
        stored_name(state),
        state.message,
        None if start is None else (start - _EPOCH) // _MICROSECOND,
        # The final state's timestamp is the end time: convert it once.
        now if run.end_time is state.timestamp else ts(run.end_time),
        ts(run.expected_start_time),
        ts(run.created) or now,
        history,
        result,
        run.code_fingerprint,
        # Most task runs have no upstream runs: they bind a NULL and pay nothing more.
        None if run.input_links is None else pack_links(run.input_links),
    )


def log_line_row(
    flow_run_id: uuid.UUID | None,
    task_run_id: uuid.UUID | None,
    level: int,
    name: str,
    message: str,
    created: float,
    extra: dict[str, Any] | None = None,
    cap: int = MAX_LINE_CHARS,
) -> tuple[Any, ...]:
    """The ``insert_log`` parameters of a log line created at ``created`` (epoch seconds):
    the log thread's form, with no ``datetime`` built per line. ``extra``: the line's extra
    fields (stored as a JSON object; None or empty: NULL)."""
    if len(message) > cap or not message.isascii():
        message = log_message(message, cap)
    return (
        None if flow_run_id is None else flow_run_id.bytes,
        None if task_run_id is None else task_run_id.bytes,
        level,
        clean_text(name),
        message,
        round(created * 1_000_000),
        encode_extra(extra, cap) if extra else None,
    )


def log_row(item: LogRecord, cap: int = MAX_LINE_CHARS) -> tuple[Any, ...]:
    """The ``insert_log`` parameters of a log line."""
    flow_run_id, task_run_id = item.flow_run_id, item.task_run_id
    return (
        None if flow_run_id is None else flow_run_id.bytes,
        None if task_run_id is None else task_run_id.bytes,
        item.level,
        clean_text(item.name),
        log_message(item.message, cap),
        (item.timestamp - _EPOCH) // _MICROSECOND,
        encode_extra(item.extra, cap) if item.extra else None,
    )


def flow_row(item: FlowRecord) -> tuple[Any, ...]:
    """The ``upsert_flow`` parameters of a flow."""
    return (_id(item.id), item.name, ts(item.created))


def _last_entry(blob: bytes) -> HistoryEntry | None:
    # Only the last chunk is decoded: the current state is its last entry.
    view = memoryview(blob)
    at, last = 0, None
    while at + 4 <= len(view):
        size = int.from_bytes(view[at : at + 4], "little")
        last = (at + 4, at + 4 + size)
        at += 4 + size
    if last is None:
        return None
    entries = _history_decoder.decode(view[last[0] : last[1]])
    return entries[-1] if entries else None


def _row_state(row: sqlite3.Row, field: str) -> State | None:
    """A row's current state: its type, name and message from the row's columns (a claim
    changes them in place), its id, time and details from the history's last entry."""
    if row["state_type"] is None:
        return None
    data: Any = None
    if row["result"] is not None:
        from millstream._engine.results.refs import StoredResult

        # The recorded result, decoded when state.result() asks for it.
        data = StoredResult(row["result"])
    own_id = uuid.UUID(bytes=row["id"])
    entry = _last_entry(row["history"])
    if entry is None:  # never written by Millstream: a state without its history
        return State(type=StateType(row["state_type"]), name=row["state_name"], data=data)
    return State(
        id=entry.id,
        type=StateType(row["state_type"]),
        name=row["state_name"],
        message=row["state_message"],
        timestamp=_EPOCH + dt.timedelta(microseconds=entry.timestamp),
        data=data,
        state_details=unpack_details(entry.details, own_id, field),
    )


def flow_run_from_row(row: sqlite3.Row) -> FlowRun:
    """A ``FlowRun`` from a ``flow_run`` row."""
    return FlowRun(
        id=uuid.UUID(bytes=row["id"]),
        name=row["name"],
        flow_id=uuid.UUID(bytes=row["flow_id"]),
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
        state=_row_state(row, "flow_run_id"),
        start_time=parse_ts(row["start_time"]),
        end_time=parse_ts(row["end_time"]),
        expected_start_time=parse_ts(row["expected_start_time"]),
        created=parse_ts(row["created"]),
        pid=row["pid"],
        hostname=row["hostname"],
        heartbeat=parse_ts(row["heartbeat"]),
        parameters_blob=row["parameters_blob"],
        epoch=row["epoch"],
    )


def task_run_from_row(row: sqlite3.Row) -> TaskRun:
    """A ``TaskRun`` from a ``task_run`` row."""
    return TaskRun(
        id=uuid.UUID(bytes=row["id"]),
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
        state=_row_state(row, "task_run_id"),
        start_time=parse_ts(row["start_time"]),
        end_time=parse_ts(row["end_time"]),
        expected_start_time=parse_ts(row["expected_start_time"]),
        created=parse_ts(row["created"]),
        code_fingerprint=row["code_fingerprint"],
        input_links=unpack_links(row["task_inputs"]),
    )


def flow_from_row(row: sqlite3.Row) -> FlowRecord:
    """A ``FlowRecord`` from a ``flow`` row."""
    return FlowRecord(
        id=uuid.UUID(bytes=row["id"]), name=row["name"], created=parse_ts(row["created"])
    )


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
        extra=decode_extra(row["extra"]),
    )


def variable_fields(row: sqlite3.Row) -> tuple[str, Any, list[str]]:
    """Name, value and tags of a ``variable`` row (value and tags are stored as JSON)."""
    return row["name"], msgspec.json.decode(row["value"]), msgspec.json.decode(row["tags"])


def deployment_fields(row: sqlite3.Row) -> dict[str, Any]:
    """A ``deployment`` row as keyword arguments of a deployment record; ``schedules`` stays
    JSON text (its types belong to serving)."""
    schema = row["parameter_schema"]
    return {
        "id": uuid.UUID(bytes=row["id"]),
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
        "concurrency_limit": row["concurrency_limit"],
        "collision_strategy": row["collision_strategy"],
    }
