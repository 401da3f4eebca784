"""The client's read queries: SQL built at run time from filters, sorts and paging.

Filters are read by attribute (``flow_run_filter.state.type.any_``), so the engine needs no
sdk types: any object with Prefect's filter attributes works, and an attribute left at None
adds nothing. Values always travel as parameters; only column names and fixed SQL come from
here. Every column is qualified with its table, because a filter on one table can sit inside
a subquery over another (flow runs that have a failed task run).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Any

from millstream._engine.exceptions import NotSupportedError, ObjectNotFound
from millstream._engine.store.rows import db_id, default_names, ts

Query = tuple[str, tuple[Any, ...]]

# Sort orders by Prefect's sort names ("" is the order without a sort). Each ends in the
# primary key so that pages cut with limit/offset neither repeat nor skip rows whose sort keys
# tie.
FLOW_RUN_SORTS: dict[str, str] = {
    # Newest first, served by the (…, created DESC) indexes.
    "": "flow_run.created DESC, flow_run.id DESC",
    "ID_DESC": "flow_run.id DESC",
    # Like Prefect, a run that has not started sorts by when it is expected to.
    "START_TIME_ASC": "coalesce(flow_run.start_time, flow_run.expected_start_time, "
    "flow_run.created) ASC, flow_run.id ASC",
    "START_TIME_DESC": "coalesce(flow_run.start_time, flow_run.expected_start_time, "
    "flow_run.created) DESC, flow_run.id DESC",
    # Runs called directly have no expected start: they were expected when created.
    "EXPECTED_START_TIME_ASC": "coalesce(flow_run.expected_start_time, flow_run.created) ASC, "
    "flow_run.id ASC",
    "EXPECTED_START_TIME_DESC": "coalesce(flow_run.expected_start_time, flow_run.created) "
    "DESC, flow_run.id DESC",
    "NAME_ASC": "flow_run.name ASC, flow_run.id ASC",
    "NAME_DESC": "flow_run.name DESC, flow_run.id DESC",
    # Only scheduled runs have a next start; the others come after them.
    "NEXT_SCHEDULED_START_TIME_ASC": "CASE WHEN flow_run.state_type = 'SCHEDULED' THEN "
    "flow_run.expected_start_time END ASC NULLS LAST, flow_run.id ASC",
    "END_TIME_DESC": "flow_run.end_time DESC, flow_run.id DESC",
}
# How long a task run ran (a running one: until now), in microseconds (times are integer
# microseconds since the epoch; 'now' from julianday, which resolves about a millisecond).
_NOW = "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)"
_DURATION = f"(coalesce(task_run.end_time, {_NOW}) - task_run.start_time)"
TASK_RUN_SORTS: dict[str, str] = {
    "": "task_run.created DESC, task_run.id DESC",
    "ID_DESC": "task_run.id DESC",
    "EXPECTED_START_TIME_ASC": "coalesce(task_run.expected_start_time, task_run.created) ASC, "
    "task_run.id ASC",
    "EXPECTED_START_TIME_DESC": "coalesce(task_run.expected_start_time, task_run.created) "
    "DESC, task_run.id DESC",
    "NAME_ASC": "task_run.name ASC, task_run.id ASC",
    "NAME_DESC": "task_run.name DESC, task_run.id DESC",
    "NEXT_SCHEDULED_START_TIME_ASC": "CASE WHEN task_run.state_type = 'SCHEDULED' THEN "
    "task_run.expected_start_time END ASC NULLS LAST, task_run.id ASC",
    "END_TIME_DESC": "task_run.end_time DESC, task_run.id DESC",
    "DURATION_DESC": f"{_DURATION} DESC, task_run.id DESC",
    "DURATION_ASC": f"{_DURATION} ASC, task_run.id ASC",
}
FLOW_SORTS: dict[str, str] = {
    "": "flow.name ASC",
    "NAME_ASC": "flow.name ASC",
    "NAME_DESC": "flow.name DESC",
    "CREATED_DESC": "flow.created DESC, flow.id DESC",
    # Flows are never updated once recorded.
    "UPDATED_DESC": "flow.created DESC, flow.id DESC",
}
LOG_SORTS: dict[str, str] = {
    # The order lines were committed: ids grow with every commit, whichever process made it,
    # so a reader paging with offset never misses a line committed after its last read.
    "": "log.id ASC",
    "TIMESTAMP_ASC": "log.timestamp ASC, log.id ASC",
    "TIMESTAMP_DESC": "log.timestamp DESC, log.id DESC",
}


class _Where:
    """Terms joined by AND, with their parameters in order."""

    def __init__(self) -> None:
        self.terms: list[str] = []
        self.params: list[Any] = []

    def add(self, term: str, *params: Any) -> None:
        self.terms.append(term)
        self.params.extend(params)

    def clause(self) -> str:
        return " WHERE " + " AND ".join(self.terms) if self.terms else ""

    def any_of(
        self,
        column: str,
        values: Iterable[Any] | None,
        negate: bool = False,
        selective: bool = False,
    ) -> None:
        if values is None:
            return
        if isinstance(values, str | bytes):
            # A lone string would otherwise be read as a list of its characters.
            raise TypeError(f"A filter on {column} takes a list of values, got {values!r}")
        values = list(values)
        if not values:
            # "Any of nothing" matches nothing; "none of nothing" excludes nothing.
            if not negate:
                self.add("0")
            return
        marks = ", ".join("?" * len(values))
        term = f"{column} {'NOT IN' if negate else 'IN'} ({marks})"
        if selective:
            # Most runs share one value here (NULL: no parent), so SQLite's statistics call
            # the column's index useless and it scans the whole created index instead (~60 ms
            # at 100,000 runs); the hint says a given value is rare, which it is (~0.2 ms).
            term = f"likelihood({term}, 0.001)"
        self.add(term, *values)

    def like(self, column: str, pattern: str | None) -> None:
        # Prefect's like_ is a case-insensitive substring match (SQLite's LIKE folds ASCII).
        if pattern is not None:
            self.add(f"{column} LIKE ?", f"%{pattern}%")

    def null(self, column: str, is_null: bool | None) -> None:
        if is_null is not None:
            self.add(f"{column} IS {'' if is_null else 'NOT '}NULL")

    def time_range(self, column: str, flt: Any) -> None:
        # Timestamps are integer microseconds: comparing them compares the times.
        before, after = _get(flt, "before_"), _get(flt, "after_")
        if before is not None:
            self.add(f"{column} <= ?", _time(before, column))
        if after is not None:
            self.add(f"{column} >= ?", _time(after, column))
        self.null(column, _get(flt, "is_null_"))

    def tags(self, table: str, flt: Any) -> None:
        for tag in _get(flt, "all_") or ():
            self.add(f"EXISTS (SELECT 1 FROM json_each({table}.tags) WHERE value = ?)", tag)
        any_tags = _get(flt, "any_")
        if any_tags is not None:
            inner = _Where()
            inner.any_of("value", any_tags)
            self.add(
                f"EXISTS (SELECT 1 FROM json_each({table}.tags){inner.clause()})", *inner.params
            )
        is_null = _get(flt, "is_null_")
        if is_null is not None:
            self.add(f"{table}.tags {'=' if is_null else '!='} '[]'")

    def within(self, template: str, inner: _Where) -> None:
        """``template`` around the inner terms (a subquery), unless there are none."""
        if inner.terms:
            self.add(template.format(where=inner.clause()), *inner.params)


def _state_name(table: str) -> str:
    # A row stores NULL for its type's default name (see rows.stored_name).
    cases = " ".join(f"WHEN '{t}' THEN '{n}'" for t, n in default_names().items())
    return f"coalesce({table}.state_name, CASE {table}.state_type {cases} END)"


def _get(obj: Any, *path: str) -> Any:
    for name in path:
        if obj is None:
            return None
        obj = getattr(obj, name, None)
    return obj


def _ids(values: Iterable[Any] | None, what: str) -> list[bytes | None] | None:
    if values is None:
        return None
    if isinstance(values, str | bytes | uuid.UUID):
        raise TypeError(f"{what} takes a list of ids, got {values!r}")
    try:
        return [db_id(v) for v in values]
    except ObjectNotFound as exc:
        raise ValueError(f"{what}: {exc}") from None


def _time(value: Any, column: str) -> int | None:
    if not isinstance(value, dt.datetime):
        raise TypeError(f"A time filter on {column} needs a datetime, got {value!r}")
    return ts(value)


def _state_types(values: Iterable[Any] | None) -> list[str] | None:
    if values is None:
        return None
    if isinstance(values, str):
        raise TypeError(f"A state type filter takes a list of state types, got {values!r}")
    return [str(getattr(v, "value", v)).upper() for v in values]


def _unsupported(flt: Any, what: str, *fields: str) -> None:
    for name in fields:
        if _get(flt, name) is not None:
            raise NotSupportedError(
                f"{what}(..., {name}=...) is not supported: Millstream has no "
                f"{name.replace('_', ' ')} to filter on"
            )


def _flow_terms(w: _Where, flt: Any, on_runs: bool) -> None:
    """Flow filter terms, on the flow table or (``on_runs``) on flow_run's copy of the flow."""
    if flt is None:
        return
    if on_runs:  # flow_name has an index with created; a join would lose it
        id_col, name_col = "flow_run.flow_id", "flow_run.flow_name"
    else:
        id_col, name_col = "flow.id", "flow.name"
    w.any_of(id_col, _ids(_get(flt, "id", "any_"), "FlowFilter.id"))
    w.any_of(name_col, _get(flt, "name", "any_"))
    w.like(name_col, _get(flt, "name", "like_"))
    _unsupported(flt, "FlowFilter", "tags")


def _flow_run_terms(w: _Where, flt: Any) -> None:
    if flt is None:
        return
    w.any_of("flow_run.id", _ids(_get(flt, "id", "any_"), "FlowRunFilter.id"))
    w.any_of("flow_run.id", _ids(_get(flt, "id", "not_any_"), "FlowRunFilter.id"), negate=True)
    w.any_of("flow_run.name", _get(flt, "name", "any_"))
    w.like("flow_run.name", _get(flt, "name", "like_"))
    w.tags("flow_run", _get(flt, "tags"))
    dep = _get(flt, "deployment_id")
    w.any_of("flow_run.deployment_id", _ids(_get(dep, "any_"), "FlowRunFilter.deployment_id"))
    w.null("flow_run.deployment_id", _get(dep, "is_null_"))
    state = _get(flt, "state")
    w.any_of("flow_run.state_type", _state_types(_get(state, "type", "any_")))
    w.any_of("flow_run.state_type", _state_types(_get(state, "type", "not_any_")), negate=True)
    w.any_of(_state_name("flow_run"), _get(state, "name", "any_"))
    w.any_of(_state_name("flow_run"), _get(state, "name", "not_any_"), negate=True)
    w.any_of("flow_run.flow_version", _get(flt, "flow_version", "any_"))
    w.time_range("flow_run.start_time", _get(flt, "start_time"))
    w.time_range("flow_run.end_time", _get(flt, "end_time"))
    w.time_range(
        "coalesce(flow_run.expected_start_time, flow_run.created)",
        _get(flt, "expected_start_time"),
    )
    next_start = _get(flt, "next_scheduled_start_time")
    if next_start is not None:
        w.add("flow_run.state_type = 'SCHEDULED'")
        w.time_range("flow_run.expected_start_time", next_start)
    parent_flow = _ids(_get(flt, "parent_flow_run_id", "any_"), "FlowRunFilter.parent_flow_run_id")
    w.any_of("flow_run.parent_flow_run_id", parent_flow, selective=True)
    parent_task = _get(flt, "parent_task_run_id")
    w.any_of(
        "flow_run.parent_task_run_id",
        _ids(_get(parent_task, "any_"), "FlowRunFilter.parent_task_run_id"),
    )
    w.null("flow_run.parent_task_run_id", _get(parent_task, "is_null_"))
    key = _get(flt, "idempotency_key")
    w.any_of("flow_run.idempotency_key", _get(key, "any_"))
    w.any_of("flow_run.idempotency_key", _get(key, "not_any_"), negate=True)
    _unsupported(flt, "FlowRunFilter", "work_queue_name", "created_by")


def _task_run_terms(w: _Where, flt: Any) -> None:
    if flt is None:
        return
    w.any_of("task_run.id", _ids(_get(flt, "id", "any_"), "TaskRunFilter.id"))
    w.any_of("task_run.name", _get(flt, "name", "any_"))
    w.like("task_run.name", _get(flt, "name", "like_"))
    w.tags("task_run", _get(flt, "tags"))
    state = _get(flt, "state")
    w.any_of("task_run.state_type", _state_types(_get(state, "type", "any_")))
    w.any_of(_state_name("task_run"), _get(state, "name", "any_"))
    w.time_range("task_run.start_time", _get(flt, "start_time"))
    w.time_range("task_run.end_time", _get(flt, "end_time"))
    flow_run = _get(flt, "flow_run_id")
    w.any_of("task_run.flow_run_id", _ids(_get(flow_run, "any_"), "TaskRunFilter.flow_run_id"))
    w.null("task_run.flow_run_id", _get(flow_run, "is_null_"))
    has_subflow = _get(flt, "subflow_runs", "exists_")
    if has_subflow is not None:
        # Not correlated: parent_task_run_id has no index, so the set is built once.
        w.add(
            f"task_run.id {'' if has_subflow else 'NOT '}IN (SELECT flow_run.parent_task_run_id "
            "FROM flow_run WHERE flow_run.parent_task_run_id IS NOT NULL)"
        )


def _deployment_terms(w: _Where, flt: Any) -> None:
    if flt is None:
        return
    w.any_of("deployment.id", _ids(_get(flt, "id", "any_"), "DeploymentFilter.id"))
    w.any_of("deployment.id", _ids(_get(flt, "id", "not_any_"), "DeploymentFilter.id"), negate=True)
    w.any_of("deployment.name", _get(flt, "name", "any_"))
    w.like("deployment.name", _get(flt, "name", "like_"))
    w.tags("deployment", _get(flt, "tags"))
    _unsupported(flt, "DeploymentFilter", "work_queue_name", "concurrency_limit")


def _flow_run_where(
    flow_filter: Any, flow_run_filter: Any, task_run_filter: Any, deployment_filter: Any
) -> _Where:
    w = _Where()
    _flow_terms(w, flow_filter, on_runs=True)
    _flow_run_terms(w, flow_run_filter)
    tasks = _Where()
    _task_run_terms(tasks, task_run_filter)
    w.within("flow_run.id IN (SELECT task_run.flow_run_id FROM task_run{where})", tasks)
    deployments = _Where()
    _deployment_terms(deployments, deployment_filter)
    w.within("flow_run.deployment_id IN (SELECT deployment.id FROM deployment{where})", deployments)
    return w


def _paged(select: str, w: _Where, order: str, limit: int | None, offset: int | None) -> Query:
    if limit is not None and (type(limit) is not int or limit < 0):
        raise ValueError(f"limit must be None or an integer >= 0, got {limit!r}")
    if offset is not None and (type(offset) is not int or offset < 0):
        raise ValueError(f"offset must be None or an integer >= 0, got {offset!r}")
    # LIMIT -1 is SQLite's "no limit".
    return (
        f"{select}{w.clause()} ORDER BY {order} LIMIT ? OFFSET ?",
        (*w.params, -1 if limit is None else limit, offset or 0),
    )


def _order(sorts: dict[str, str], sort: Any, what: str) -> str:
    key = "" if sort is None else str(getattr(sort, "value", sort))
    order = sorts.get(key)
    if order is None:
        names = ", ".join(k for k in sorts if k)
        raise ValueError(f"Unknown {what} sort {sort!r}; use one of {names}")
    return order


def flow_runs(
    *,
    flow_filter: Any = None,
    flow_run_filter: Any = None,
    task_run_filter: Any = None,
    deployment_filter: Any = None,
    sort: Any = None,
    limit: int | None = None,
    offset: int | None = None,
) -> Query:
    """The flow runs matching every filter, in ``sort`` order (default: newest first)."""
    w = _flow_run_where(flow_filter, flow_run_filter, task_run_filter, deployment_filter)
    order = _order(FLOW_RUN_SORTS, sort, "flow run")
    return _paged("SELECT flow_run.* FROM flow_run", w, order, limit, offset)


def count_flow_runs(
    *,
    flow_filter: Any = None,
    flow_run_filter: Any = None,
    task_run_filter: Any = None,
    deployment_filter: Any = None,
) -> Query:
    """How many flow runs match every filter."""
    w = _flow_run_where(flow_filter, flow_run_filter, task_run_filter, deployment_filter)
    return f"SELECT count(*) FROM flow_run{w.clause()}", tuple(w.params)


def task_runs(
    *,
    flow_filter: Any = None,
    flow_run_filter: Any = None,
    task_run_filter: Any = None,
    deployment_filter: Any = None,
    sort: Any = None,
    limit: int | None = None,
    offset: int | None = None,
) -> Query:
    """The task runs matching ``task_run_filter`` whose flow runs match the other filters,
    in ``sort`` order (default: newest first)."""
    w = _Where()
    _task_run_terms(w, task_run_filter)
    runs = _flow_run_where(flow_filter, flow_run_filter, None, deployment_filter)
    w.within("task_run.flow_run_id IN (SELECT flow_run.id FROM flow_run{where})", runs)
    order = _order(TASK_RUN_SORTS, sort, "task run")
    return _paged("SELECT task_run.* FROM task_run", w, order, limit, offset)


def flows(
    *,
    flow_filter: Any = None,
    flow_run_filter: Any = None,
    task_run_filter: Any = None,
    deployment_filter: Any = None,
    sort: Any = None,
    limit: int | None = None,
    offset: int | None = None,
) -> Query:
    """The flows matching ``flow_filter`` that have a run matching the run filters, in
    ``sort`` order (default: by name)."""
    w = _Where()
    _flow_terms(w, flow_filter, on_runs=False)
    runs = _flow_run_where(None, flow_run_filter, task_run_filter, deployment_filter)
    w.within("flow.id IN (SELECT flow_run.flow_id FROM flow_run{where})", runs)
    order = _order(FLOW_SORTS, sort, "flow")
    return _paged("SELECT flow.* FROM flow", w, order, limit, offset)


def logs(
    *, log_filter: Any = None, sort: Any = None, limit: int | None = None, offset: int | None = None
) -> Query:
    """The log lines matching ``log_filter``, in ``sort`` order (default: as committed)."""
    w = _Where()
    if log_filter is not None:
        flow_run = _get(log_filter, "flow_run_id", "any_")
        w.any_of("log.flow_run_id", _ids(flow_run, "LogFilter.flow_run_id"))
        task_run = _get(log_filter, "task_run_id")
        w.any_of("log.task_run_id", _ids(_get(task_run, "any_"), "LogFilter.task_run_id"))
        w.null("log.task_run_id", _get(task_run, "is_null_"))
        level = _get(log_filter, "level")
        if _get(level, "ge_") is not None:
            w.add("log.level >= ?", int(_get(level, "ge_")))
        if _get(level, "le_") is not None:
            w.add("log.level <= ?", int(_get(level, "le_")))
        w.time_range("log.timestamp", _get(log_filter, "timestamp"))
        w.like("log.message", _get(log_filter, "text", "query"))
    order = _order(LOG_SORTS, sort, "log")
    return _paged("SELECT log.* FROM log", w, order, limit, offset)


def variables(*, limit: int | None = None, offset: int | None = None) -> Query:
    """Every variable, by name."""
    return _paged("SELECT name, value, tags FROM variable", _Where(), "name ASC", limit, offset)
