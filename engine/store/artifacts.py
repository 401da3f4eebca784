"""Artifacts in the store: queued writes (the write-behind path) and filtered reads.

Writes go through the writer's queue like every other write (a read in this process sees them
first: ``Store.read`` commits what was queued); reads build their SQL from Prefect-style
artifact filters, with the run filters of ``reads`` for "artifacts of runs that ...".
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import sqlite3
import uuid
from typing import TYPE_CHECKING, Any

import msgspec

from millstream._engine.model.artifacts import Artifact, ArtifactCollection, collection_id
from millstream._engine.store import reads, rows
from millstream._engine.store.migrations import Q

if TYPE_CHECKING:
    from millstream._engine.store.core import Store

ARTIFACT_SORTS: dict[str, str] = {
    # Prefect's default (ID_DESC); ids are time-ordered here, so it is also newest first.
    "": "artifact.id DESC",
    "CREATED_DESC": "artifact.created DESC, artifact.id DESC",
    "UPDATED_DESC": "artifact.updated DESC, artifact.id DESC",
    "ID_DESC": "artifact.id DESC",
    "KEY_DESC": "artifact.key DESC, artifact.created DESC, artifact.id DESC",
    "KEY_ASC": "artifact.key ASC, artifact.created DESC, artifact.id DESC",
}


def put_artifact(store: Store, artifact: Artifact) -> concurrent.futures.Future[Any]:
    """Queue a new artifact; the future resolves once it is committed."""
    stamp = rows.ts(artifact.created or dt.datetime.now(dt.UTC))
    row = (
        artifact.id.bytes,
        artifact.key,
        artifact.type,
        artifact.description,
        rows.encode_json(artifact.data),
        rows.encode_json(artifact.metadata_) if artifact.metadata_ is not None else None,
        rows.db_id(artifact.flow_run_id),
        rows.db_id(artifact.task_run_id),
        stamp,
        stamp,
    )
    sql = Q["insert_artifact"]
    return store.put_call(lambda conn: conn.execute(sql, row))


async def update_artifact(
    store: Store, artifact_id: uuid.UUID | str, data: Any, description: str | None
) -> bool:
    """Replace an artifact's data (and its description, unless None); False if there is no
    such artifact."""
    params = (
        rows.encode_json(data),
        description,
        rows.ts(dt.datetime.now(dt.UTC)),
        rows.db_id(artifact_id),
    )
    sql = Q["update_artifact"]
    fut = store.put_call(lambda conn: conn.execute(sql, params).rowcount)
    changed: int = await _wait(fut)
    return changed > 0


async def delete_artifact(store: Store, artifact_id: uuid.UUID | str) -> bool:
    """Delete an artifact; False if there is no such artifact."""
    sql, params = Q["delete_artifact"], (rows.db_id(artifact_id),)
    deleted: int = await _wait(store.put_call(lambda conn: conn.execute(sql, params).rowcount))
    return deleted > 0


async def _wait(fut: concurrent.futures.Future[Any]) -> Any:
    return await asyncio.wrap_future(fut)


def artifact_from_row(row: sqlite3.Row) -> Artifact:
    """A stored row back as an ``Artifact``."""
    return Artifact(
        id=uuid.UUID(bytes=row["id"]),
        created=rows.parse_ts(row["created"]),
        updated=rows.parse_ts(row["updated"]),
        key=row["key"],
        type=row["type"],
        description=row["description"],
        data=msgspec.json.decode(row["data"]) if row["data"] is not None else None,
        metadata_=msgspec.json.decode(row["metadata"]) if row["metadata"] else None,
        flow_run_id=rows.parse_id(row["flow_run_id"]),
        task_run_id=rows.parse_id(row["task_run_id"]),
    )


def collection_from(artifact: Artifact) -> ArtifactCollection:
    """The collection row of a key's newest artifact."""
    assert artifact.key is not None
    return ArtifactCollection(
        id=collection_id(artifact.key),
        key=artifact.key,
        latest_id=artifact.id,
        created=artifact.created,
        updated=artifact.updated,
        type=artifact.type,
        description=artifact.description,
        data=artifact.data,
        metadata_=artifact.metadata_,
        flow_run_id=artifact.flow_run_id,
        task_run_id=artifact.task_run_id,
    )


def _artifact_terms(w: reads._Where, flt: Any) -> None:
    if flt is None:
        return
    get = reads._get
    w.any_of("artifact.id", reads._ids(get(flt, "id", "any_"), "ArtifactFilter.id"))
    latest = reads._ids(get(flt, "latest_id", "any_"), "ArtifactCollectionFilter.latest_id")
    w.any_of("artifact.id", latest)
    w.any_of("artifact.key", get(flt, "key", "any_"))
    like = get(flt, "key", "like_")
    if like is not None:
        # Prefect's like_ here takes SQL wildcards as given.
        w.add("artifact.key LIKE ?", like)
    exists = get(flt, "key", "exists_")
    if exists is not None:
        w.null("artifact.key", not exists)
    flow_run = get(flt, "flow_run_id", "any_")
    w.any_of("artifact.flow_run_id", reads._ids(flow_run, "ArtifactFilter.flow_run_id"))
    task_run = get(flt, "task_run_id", "any_")
    w.any_of("artifact.task_run_id", reads._ids(task_run, "ArtifactFilter.task_run_id"))
    w.any_of("artifact.type", get(flt, "type", "any_"))
    w.any_of("artifact.type", get(flt, "type", "not_any_"), negate=True)


def _where(artifact_filter: Any, flow_run_filter: Any, task_run_filter: Any) -> reads._Where:
    w = reads._Where()
    _artifact_terms(w, artifact_filter)
    runs = reads._flow_run_where(None, flow_run_filter, None, None)
    w.within("artifact.flow_run_id IN (SELECT flow_run.id FROM flow_run{where})", runs)
    tasks = reads._Where()
    reads._task_run_terms(tasks, task_run_filter)
    w.within("artifact.task_run_id IN (SELECT task_run.id FROM task_run{where})", tasks)
    return w


def artifacts_query(
    *,
    artifact_filter: Any = None,
    flow_run_filter: Any = None,
    task_run_filter: Any = None,
    sort: Any = None,
    limit: int | None = None,
    offset: int | None = None,
    latest: bool = False,
) -> reads.Query:
    """The artifacts matching every filter (``latest``: only the newest of each key)."""
    w = _where(artifact_filter, flow_run_filter, task_run_filter)
    if latest:
        # Each key once (a pass over ix_artifact_key), then its newest by one probe of it.
        w.add(
            "artifact.id IN (SELECT (SELECT newest.id FROM artifact AS newest "
            "WHERE newest.key = keys.key ORDER BY newest.created DESC, newest.id DESC LIMIT 1) "
            "FROM (SELECT DISTINCT key FROM artifact WHERE key IS NOT NULL) AS keys)"
        )
    order = reads._order(ARTIFACT_SORTS, sort, "artifact")
    return reads._paged("SELECT artifact.* FROM artifact", w, order, limit, offset)


async def read_artifacts(store: Store, **filters: Any) -> list[Artifact]:
    """Artifacts matching Prefect-style filters, sort and paging."""
    found = await store.fetchall_sql(*artifacts_query(**filters))
    return [artifact_from_row(r) for r in found]


async def read_latest_artifacts(store: Store, **filters: Any) -> list[ArtifactCollection]:
    """The newest artifact of each key matching the filters."""
    found = await store.fetchall_sql(*artifacts_query(latest=True, **filters))
    return [collection_from(artifact_from_row(r)) for r in found]


async def read_artifact(store: Store, artifact_id: uuid.UUID | str) -> Artifact | None:
    """The artifact with this id, or None."""
    row = await store.fetchone("select_artifact", (rows.db_id(artifact_id),))
    return artifact_from_row(row) if row is not None else None
