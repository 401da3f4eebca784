"""Read queries built at run time from filter objects (the client's filters), next to the store.

Filters are read by attribute (``flt.state.type.any_``), so the engine needs no sdk types.
Every value goes in as a parameter; only column names and fixed SQL come from here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from engine.store import _ts, db_id

Where = tuple[list[str], list[Any]]

FLOW_RUN_SORTS = {
    None: "created DESC, id DESC",
    "ID_DESC": "id DESC",
    "START_TIME_ASC": "start_time ASC, created ASC",
    "START_TIME_DESC": "start_time DESC, created DESC",
    "EXPECTED_START_TIME_ASC": "coalesce(expected_start_time, created) ASC",
    "EXPECTED_START_TIME_DESC": "coalesce(expected_start_time, created) DESC",
    "NAME_ASC": "name ASC",
    "NAME_DESC": "name DESC",
    "END_TIME_DESC": "end_time DESC",
}
TASK_RUN_SORTS = {
    None: "created ASC, id ASC",
    "ID_DESC": "id DESC",
    "EXPECTED_START_TIME_ASC": "coalesce(expected_start_time, created) ASC",
    "EXPECTED_START_TIME_DESC": "coalesce(expected_start_time, created) DESC",
    "NAME_ASC": "name ASC",
    "NAME_DESC": "name DESC",
    "END_TIME_DESC": "end_time DESC",
}
LOG_SORTS = {None: "id ASC", "TIMESTAMP_ASC": "id ASC", "TIMESTAMP_DESC": "id DESC"}


def _get(obj: Any, *path: str) -> Any:
    for name in path:
        if obj is None:
            return None
        obj = getattr(obj, name, None)
    return obj


def _in(column: str, values: Iterable[Any] | None, where: Where, negate: bool = False) -> None:
    if values is None:
        return
    values = list(values)
    if not values:
        where[0].append("1" if negate else "0")  # "any of nothing" matches nothing
        return
    marks = ", ".join("?" * len(values))
    where[0].append(f"{column} {'NOT IN' if negate else 'IN'} ({marks})")
    where[1].extend(values)


def _ids(values: Iterable[Any] | None) -> list[str | None] | None:
    return None if values is None else [db_id(v) for v in values]


def _types(values: Iterable[Any] | None) -> list[str] | None:
    return None if values is None else [str(getattr(v, "value", v)) for v in values]


def _time_range(column: str, flt: Any, where: Where) -> None:
    before, after = _get(flt, "before_"), _get(flt, "after_")
    if before is not None:
        where[0].append(f"{column} <= ?")
        where[1].append(_ts(before))
    if after is not None:
        where[0].append(f"{column} >= ?")
        where[1].append(_ts(after))
    is_null = _get(flt, "is_null_")
    if is_null is not None:
        where[0].append(f"{column} IS {'' if is_null else 'NOT '}NULL")


def _like(column: str, pattern: str | None, where: Where) -> None:
    if pattern is not None:
        where[0].append(f"{column} LIKE ?")
        where[1].append(f"%{pattern}%")


def flow_run_where(
    flow_filter: Any = None,
    flow_run_filter: Any = None,
    task_run_filter: Any = None,
    deployment_filter: Any = None,
) -> Where:
    """WHERE clauses and parameters selecting flow runs."""
    where: Where = ([], [])
    _in("flow_name", _get(flow_filter, "name", "any_"), where)
    _like("flow_name", _get(flow_filter, "name", "like_"), where)
    _in("flow_id", _ids(_get(flow_filter, "id", "any_")), where)
    f = flow_run_filter
    _in("id", _ids(_get(f, "id", "any_")), where)
    _in("id", _ids(_get(f, "id", "not_any_")), where, negate=True)
    _in("name", _get(f, "name", "any_"), where)
    _like("name", _get(f, "name", "like_"), where)
    for tag in _get(f, "tags", "all_") or []:
        where[0].append("EXISTS (SELECT 1 FROM json_each(flow_run.tags) WHERE value = ?)")
        where[1].append(tag)
    any_tags = _get(f, "tags", "any_")
    if any_tags is not None:
        marks = ", ".join("?" * len(any_tags)) or "NULL"
        where[0].append(f"EXISTS (SELECT 1 FROM json_each(flow_run.tags) WHERE value IN ({marks}))")
        where[1].extend(any_tags)
    tags_null = _get(f, "tags", "is_null_")
    if tags_null is not None:
        where[0].append("tags = '[]'" if tags_null else "tags != '[]'")
    _in("state_type", _types(_get(f, "state", "type", "any_")), where)
    _in("state_type", _types(_get(f, "state", "type", "not_any_")), where, negate=True)
    _in("state_name", _get(f, "state", "name", "any_"), where)
    _in("state_name", _get(f, "state", "name", "not_any_"), where, negate=True)
    _time_range("start_time", _get(f, "start_time"), where)
    _time_range("coalesce(expected_start_time, created)", _get(f, "expected_start_time"), where)
    _in("parent_flow_run_id", _ids(_get(f, "parent_flow_run_id", "any_")), where)
    _in("deployment_id", _ids(_get(f, "deployment_id", "any_")), where)
    dep_null = _get(f, "deployment_id", "is_null_")
    if dep_null is not None:
        where[0].append(f"deployment_id IS {'' if dep_null else 'NOT '}NULL")
    _in("deployment_id", _ids(_get(deployment_filter, "id", "any_")), where)
    if task_run_filter is not None:
        sub_where = task_run_where(task_run_filter)
        if sub_where[0]:
            where[0].append(
                "id IN (SELECT flow_run_id FROM task_run WHERE " + " AND ".join(sub_where[0]) + ")"
            )
            where[1].extend(sub_where[1])
    return where


def task_run_where(task_run_filter: Any = None) -> Where:
    """WHERE clauses and parameters selecting task runs."""
    where: Where = ([], [])
    f = task_run_filter
    _in("id", _ids(_get(f, "id", "any_")), where)
    _in("name", _get(f, "name", "any_"), where)
    _like("name", _get(f, "name", "like_"), where)
    _in("state_type", _types(_get(f, "state", "type", "any_")), where)
    _in("state_name", _get(f, "state", "name", "any_"), where)
    _in("flow_run_id", _ids(_get(f, "flow_run_id", "any_")), where)
    null_flow = _get(f, "flow_run_id", "is_null_")
    if null_flow is not None:
        where[0].append(f"flow_run_id IS {'' if null_flow else 'NOT '}NULL")
    _time_range("start_time", _get(f, "start_time"), where)
    return where


def log_where(log_filter: Any = None) -> Where:
    """WHERE clauses and parameters selecting log lines."""
    where: Where = ([], [])
    _in("flow_run_id", _ids(_get(log_filter, "flow_run_id", "any_")), where)
    _in("task_run_id", _ids(_get(log_filter, "task_run_id", "any_")), where)
    ge, le = _get(log_filter, "level", "ge_"), _get(log_filter, "level", "le_")
    if ge is not None:
        where[0].append("level >= ?")
        where[1].append(ge)
    if le is not None:
        where[0].append("level <= ?")
        where[1].append(le)
    return where


def select(
    table: str, where: Where, order: str, limit: int | None, offset: int | None
) -> tuple[str, list[Any]]:
    """A full SELECT over ``table`` with the clauses, order and paging."""
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative integer, got {limit!r}")
    if offset is not None and (not isinstance(offset, int) or offset < 0):
        raise ValueError(f"offset must be a non-negative integer, got {offset!r}")
    sql = f"SELECT * FROM {table}"
    if where[0]:
        sql += " WHERE " + " AND ".join(where[0])
    sql += f" ORDER BY {order} LIMIT ? OFFSET ?"
    return sql, [*where[1], -1 if limit is None else limit, offset or 0]


def sort_clause(sorts: dict[Any, str], sort: Any, what: str) -> str:
    """The ORDER BY for a sort name (or enum); a clear error for unknown ones."""
    key = None if sort is None else str(getattr(sort, "value", sort))
    if key not in sorts:
        raise ValueError(
            f"Unknown {what} sort {sort!r}; use one of {sorted(k for k in sorts if k)}"
        )
    return sorts[key]
