"""The dashboard's reads: the runs page (filters, a search, keyset pages, counts per state)
and the fixed reads of the other pages, each served by an index (see ``benchmarks/dashboard.py``:
every page within 100 ms at 100,000 flow runs and 1,000,000 task runs).

Pages are cut by keyset (``before``: the last row's created time and id), not by offset: the
hundredth page costs what the first does.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from millstream._engine.model.records import FlowRun, LogRecord, TaskRun
from millstream._engine.store import reads, rows
from millstream._engine.store.migrations import expand

if TYPE_CHECKING:
    from millstream._engine.store.core import Store


@dataclass
class RunQuery:
    """What the runs page asks for; a field left empty adds nothing."""

    flows: list[str] = field(default_factory=list)
    deployment_id: uuid.UUID | None = None
    states: list[str] = field(default_factory=list)
    tag: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    # A run name prefix, or an id prefix (hex digits, dashes allowed).
    search: str | None = None


def _id_range(prefix: str) -> tuple[bytes, bytes | None] | None:
    """The id range ``[low, high)`` of ids starting with these hex digits, or None."""
    digits = prefix.replace("-", "").lower()
    if not digits or len(digits) > 32 or any(c not in "0123456789abcdef" for c in digits):
        return None
    low = int(digits.ljust(32, "0"), 16)
    step = 16 ** (32 - len(digits))
    high = low + step
    return low.to_bytes(16, "big"), high.to_bytes(16, "big") if high < 2**128 else None


def _search(w: reads._Where, text: str) -> None:
    # A name prefix is a range on ix_flow_run_name (case-sensitive, like the names shown);
    # hex text may also be an id prefix, a range on the primary key.
    terms = ["(flow_run.name >= ? AND flow_run.name < ?)"]
    params: list[Any] = [text, text + "\U0010ffff"]
    span = _id_range(text)
    if span is not None:
        low, high = span
        if high is None:
            terms.append("flow_run.id >= ?")
            params.append(low)
        else:
            terms.append("(flow_run.id >= ? AND flow_run.id < ?)")
            params.extend((low, high))
    w.add("(" + " OR ".join(terms) + ")", *params)


def _tag_drives(query: RunQuery) -> bool:
    """Whether the tag's range of ``flow_run_tag`` drives the read: with a flow, deployment
    or search filter too, the runs' own indexes narrow more and the tag is a probe."""
    return bool(query.tag) and not (query.flows or query.deployment_id or query.search)


def _where(query: RunQuery, with_states: bool = True) -> reads._Where:
    w = reads._Where()
    # Where the tag table drives, it answers the state and time terms itself.
    table = "flow_run_tag" if _tag_drives(query) else "flow_run"
    if query.flows:
        w.any_of("flow_run.flow_name", query.flows)
    if query.deployment_id is not None:
        w.add("flow_run.deployment_id = ?", query.deployment_id.bytes)
    if with_states and query.states:
        w.any_of(f"{table}.state_type", [s.upper() for s in query.states])
    if query.tag and table == "flow_run_tag":
        w.add("flow_run_tag.tag = ?", query.tag)
    elif query.tag:
        w.add(
            "EXISTS (SELECT 1 FROM flow_run_tag WHERE flow_run_tag.tag = ? AND "
            "flow_run_tag.created = flow_run.created AND flow_run_tag.flow_run_id = flow_run.id)",
            query.tag,
        )
    if query.since is not None:
        w.add(f"{table}.created >= ?", rows.ts(query.since))
    if query.until is not None:
        w.add(f"{table}.created <= ?", rows.ts(query.until))
    if query.search:
        _search(w, query.search)
    return w


def runs_page(
    query: RunQuery, before: tuple[int, bytes] | None, limit: int
) -> tuple[str, tuple[Any, ...]]:
    """Flow runs newest first, after the cursor ``before`` (created, id), ``limit`` + 1 of
    them (the extra one says whether there is a next page)."""
    w = _where(query)
    if _tag_drives(query):
        # The tag's range newest first, each run looked up by id (CROSS JOIN keeps the order).
        source = "flow_run_tag CROSS JOIN flow_run ON flow_run.id = flow_run_tag.flow_run_id"
        created_col, id_col = "flow_run_tag.created", "flow_run_tag.flow_run_id"
    else:
        source, created_col, id_col = "flow_run", "flow_run.created", "flow_run.id"
    if before is not None:
        created, run_id = before
        w.add(
            f"({created_col} < ? OR ({created_col} = ? AND {id_col} < ?))",
            created,
            created,
            run_id,
        )
    sql = (
        f"SELECT flow_run.* FROM {source}"
        f"{w.clause()} ORDER BY {created_col} DESC, {id_col} DESC LIMIT ?"
    )
    return sql, (*w.params, limit + 1)


def state_counts(query: RunQuery) -> tuple[str, tuple[Any, ...]]:
    """How many runs match ``query`` (its states aside) in each state type."""
    w = _where(query, with_states=False)
    if _tag_drives(query):
        # Every term is on the tag table: counted from (tag, state_type) alone.
        sql = f"SELECT flow_run_tag.state_type, count(*) FROM flow_run_tag{w.clause()} GROUP BY 1"
    else:
        sql = f"SELECT flow_run.state_type, count(*) FROM flow_run{w.clause()} GROUP BY 1"
    return sql, tuple(w.params)


async def read_runs_page(
    store: Store, query: RunQuery, before: tuple[int, bytes] | None, limit: int
) -> tuple[list[FlowRun], tuple[int, bytes] | None]:
    """A page of flow runs and the cursor of the next page (None on the last page)."""
    found = await store.fetchall_sql(*runs_page(query, before, limit))
    page = found[:limit]
    cursor = (page[-1]["created"], page[-1]["id"]) if len(found) > limit else None
    return [rows.flow_run_from_row(r) for r in page], cursor


async def read_state_counts(store: Store, query: RunQuery) -> dict[str, int]:
    """Runs per state type (``query`` unfiltered: one pass over the state index)."""
    if query == RunQuery():
        found = await store.fetchall("count_flow_runs_by_state")
    else:
        found = await store.fetchall_sql(*state_counts(query))
    return {r[0]: r[1] for r in found if r[0] is not None}


async def read_flow_names(store: Store, limit: int = 500) -> list[str]:
    """Flow names, for the filter menu."""
    return [r[0] for r in await store.fetchall("select_flow_names", (limit,))]


async def read_task_runs(store: Store, flow_run_id: uuid.UUID, limit: int) -> list[TaskRun]:
    """A flow run's first ``limit`` task runs, in creation order."""
    found = await store.fetchall("select_task_runs_page_of_flow_run", (flow_run_id.bytes, limit))
    return [rows.task_run_from_row(r) for r in found]


async def read_subflow_runs(store: Store, flow_run_id: uuid.UUID, limit: int) -> list[FlowRun]:
    """A flow run's child flow runs, in creation order."""
    found = await store.fetchall("select_subflow_runs", (flow_run_id.bytes, limit))
    return [rows.flow_run_from_row(r) for r in found]


async def read_logs_after(
    store: Store, flow_run_id: uuid.UUID, after: int, level: int, limit: int
) -> list[LogRecord]:
    """A flow run's log lines after line id ``after`` at ``level`` or above, oldest first."""
    found = await store.fetchall(
        "select_log_levels_of_flow_run", (flow_run_id.bytes, after, level, limit)
    )
    return [rows.log_from_row(r) for r in found]


async def read_deployment_runs(
    store: Store, deployment_id: uuid.UUID, limit: int
) -> tuple[list[FlowRun], list[FlowRun]]:
    """(next scheduled runs, last runs) of a deployment."""
    upcoming = await store.fetchall("select_next_runs_of_deployment", (deployment_id.bytes, limit))
    last = await store.fetchall("select_last_runs_of_deployment", (deployment_id.bytes, limit))
    return [rows.flow_run_from_row(r) for r in upcoming], [rows.flow_run_from_row(r) for r in last]


async def read_leases(store: Store, limit: int = 200) -> list[dict[str, Any]]:
    """Runs held by a process now (a worker's leases): run, holder and last heartbeat."""
    found = await store.fetchall("select_live_workers", (limit,))
    return [
        {
            "id": uuid.UUID(bytes=r["id"]),
            "name": r["name"],
            "flow_name": r["flow_name"],
            "deployment_id": rows.parse_id(r["deployment_id"]),
            "pid": r["pid"],
            "hostname": r["hostname"],
            "heartbeat": rows.parse_ts(r["heartbeat"]),
            "state_type": r["state_type"],
        }
        for r in found
    ]


# At most this many upstream runs are listed per parameter (a task given a list of thousands
# of futures); their names are read this many at a time (within SQLite's parameter limit).
UPSTREAM_SHOWN = 200
_NAMES_AT_ONCE = 500


async def read_upstream_runs(store: Store, run: TaskRun) -> list[dict[str, Any]]:
    """A task run's inputs (Prefect's ``task_inputs``) as the task run page lists them: each
    parameter that came from upstream task runs (``"parameter"``), how many (``"count"``) and
    the first ``UPSTREAM_SHOWN`` of them (``"runs"``: ``{"id", "name"}``, ``name`` None for a
    run no longer recorded)."""
    found_links = run.input_links or {}
    # In the order of task_inputs: the parameters', then wait_for.
    links = {k: found_links[k] for k in [*run.parameters, "wait_for"] if found_links.get(k)}
    ids = list(dict.fromkeys(i for found in links.values() for i in found[:UPSTREAM_SHOWN]))
    names: dict[uuid.UUID, str] = {}
    for at in range(0, len(ids), _NAMES_AT_ONCE):
        chunk = ids[at : at + _NAMES_AT_ONCE]
        sql = expand("select_task_run_names", len(chunk))
        for r in await store.fetchall_sql(sql, tuple(i.bytes for i in chunk)):
            names[uuid.UUID(bytes=r["id"])] = r["name"]
    return [
        {
            "parameter": name,
            "count": len(found),
            "runs": [{"id": i, "name": names.get(i)} for i in found[:UPSTREAM_SHOWN]],
        }
        for name, found in links.items()
    ]
