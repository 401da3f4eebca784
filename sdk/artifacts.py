"""Artifacts, as Prefect's ``prefect.artifacts``: tables, markdown, links, progress and images
recorded with the current flow or task run (``create_table_artifact(rows, key="report")``).

Each ``create_*`` function is sync-compatible (awaitable in async code, blocking in sync code;
``acreate_*`` is always async) and returns the new artifact's id. The artifact is queued on the
store's write-behind path with the run's other records; ``get_client().read_artifacts()`` and
the dashboard read it back.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
import warnings
from typing import Any, ClassVar

from millstream._engine.model.artifacts import Artifact as ArtifactRecord
from millstream._engine.model.artifacts import check_key
from millstream._engine.model.ids import new_id
from millstream._engine.orchestrate.context import flow_run_var, task_run_var
from millstream._engine.settings import get_current_settings
from millstream._engine.store import Store, get_store
from millstream._engine.store import artifacts as stored
from millstream._sync import dispatch

logger = logging.getLogger("millstream.artifacts")

Table = dict[str, list[Any]] | list[dict[str, Any]] | list[list[Any]]


def _store() -> Store:
    flow_ctx = flow_run_var.get()
    if flow_ctx is not None:
        return flow_ctx.store
    return get_store(get_current_settings().database_path)


def _run_ids() -> tuple[uuid.UUID | None, uuid.UUID | None]:
    """(task run id, flow run id) of the current run; a task run gives both, as in Prefect."""
    task_ctx, flow_ctx = task_run_var.get(), flow_run_var.get()
    task_run_id = task_ctx.task_run.id if task_ctx is not None else None
    if task_ctx is not None and task_ctx.task_run.flow_run_id is not None:
        return task_run_id, task_ctx.task_run.flow_run_id
    return task_run_id, flow_ctx.flow_run.id if flow_ctx is not None else None


class Artifact:
    """An artifact to record: ``type``, ``key`` (lowercase letters, numbers and dashes),
    ``description`` and ``data``. The subclasses hold their own kind of data and format it."""

    type: ClassVar[str | None] = None

    def __init__(
        self,
        *,
        key: str | None = None,
        description: str | None = None,
        data: Any = None,
        flow_run_id: uuid.UUID | None = None,
        task_run_id: uuid.UUID | None = None,
        metadata_: dict[str, str] | None = None,
        type: str | None = None,
    ) -> None:
        check_key(key)
        self.key = key
        self.description = description
        self.data = data
        self.flow_run_id = flow_run_id
        self.task_run_id = task_run_id
        self.metadata_ = metadata_
        if type is not None:
            self.type = type  # type: ignore[misc]

    async def aformat(self) -> Any:
        """The data as recorded (JSON text of ``data`` for a plain artifact)."""
        return json.dumps(self.data)

    async def _format(self) -> Any:
        # Late-bound, so one sync-compatible ``format`` serves every subclass's aformat.
        return await self.aformat()

    format = dispatch(_format)

    async def acreate(self, client: Any = None) -> ArtifactRecord:
        """Record the artifact with the current run and return it."""
        task_run_id, flow_run_id = _run_ids()
        if task_run_id is None and flow_run_id is None:
            warnings.warn(
                "Artifact creation outside of a flow or task run is deprecated and will be "
                "removed in a later version.",
                FutureWarning,
                stacklevel=3,
            )
        record = ArtifactRecord(
            id=new_id(),
            key=self.key,
            type=self.type,
            description=self.description,
            data=await self.aformat(),
            metadata_=self.metadata_,
            flow_run_id=self.flow_run_id or flow_run_id,
            task_run_id=self.task_run_id or task_run_id,
        )
        stored.put_artifact(_store(), record)
        return record

    create = dispatch(acreate)

    @classmethod
    async def aget(cls, key: str | None = None, client: Any = None) -> ArtifactRecord | None:
        """The newest artifact recorded under ``key``, or None."""
        if key is None:
            return None
        found = await stored.read_artifacts(
            _store(), artifact_filter=_KeyFilter(key), sort="CREATED_DESC", limit=1
        )
        return found[0] if found else None

    get = classmethod(dispatch(aget.__func__))  # type: ignore[attr-defined]

    @classmethod
    async def aget_or_create(
        cls, key: str | None = None, description: str | None = None, data: Any = None, **kw: Any
    ) -> tuple[ArtifactRecord, bool]:
        """The newest artifact of ``key`` and False, or a new one and True."""
        existing = await cls.aget(key)
        if existing is not None:
            return existing, False
        made = cls(key=key, description=description, data=data, **kw)
        return await made.acreate(), True

    get_or_create = classmethod(dispatch(aget_or_create.__func__))  # type: ignore[attr-defined]


class _KeyFilter:
    """An artifact filter on one key (read by attribute, like the client's filters)."""

    def __init__(self, key: str) -> None:
        self.key = _Any([key])


class _Any:
    def __init__(self, values: list[str]) -> None:
        self.any_ = values


class LinkArtifact(Artifact):
    """A link, recorded as markdown (``[text](link)``)."""

    type = "markdown"

    def __init__(self, *, link: str, link_text: str | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.link, self.link_text = link, link_text

    async def aformat(self) -> str:
        """``[link_text](link)``, or ``[link](link)`` without a text."""
        return f"[{self.link_text or self.link}]({self.link})"


class MarkdownArtifact(Artifact):
    """Markdown text."""

    type = "markdown"

    def __init__(self, *, markdown: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.markdown = markdown

    async def aformat(self) -> str:
        """The markdown as given."""
        return self.markdown


def _sanitize(item: Any) -> Any:
    # NaN is not JSON: Prefect records it as null.
    if isinstance(item, list):
        return [_sanitize(sub) for sub in item]
    if isinstance(item, dict):
        return {k: _sanitize(v) for k, v in item.items()}
    if isinstance(item, float) and math.isnan(item):
        return None
    return item


class TableArtifact(Artifact):
    """A table: a dict of columns, a list of row dicts, or a list of row lists."""

    type = "table"

    def __init__(self, *, table: Table, **kw: Any) -> None:
        super().__init__(**kw)
        if not isinstance(table, dict | list):
            raise TypeError(
                "create_table_artifact(table=...) takes a dict of columns, a list of dicts "
                f"or a list of lists, got {type(table).__name__}"
            )
        self.table = table

    async def aformat(self) -> str:
        """The table as JSON text (NaN as null)."""
        return json.dumps(_sanitize(self.table))


class ProgressArtifact(Artifact):
    """Progress as a percentage from 0 to 100 (a value outside is clamped, with a warning)."""

    type = "progress"

    def __init__(self, *, progress: float, **kw: Any) -> None:
        super().__init__(**kw)
        if isinstance(progress, bool) or not isinstance(progress, int | float):
            raise TypeError(f"progress must be a number from 0 to 100, got {progress!r}")
        self.progress = float(progress)

    async def aformat(self) -> float:
        """The progress, clamped to 0..100."""
        if not 0.0 <= self.progress <= 100.0:
            logger.warning(
                f"ProgressArtifact received an invalid value, Progress: {self.progress}%"
            )
            self.progress = max(0.0, min(self.progress, 100.0))
            logger.warning(f"Interpreting as {self.progress}% progress")
        return self.progress


class ImageArtifact(Artifact):
    """An image shown from a publicly reachable URL."""

    type = "image"

    def __init__(self, *, image_url: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.image_url = image_url

    async def aformat(self) -> str:
        """The image's URL."""
        return self.image_url


async def _create(artifact: Artifact) -> uuid.UUID:
    return (await artifact.acreate()).id


async def acreate_link_artifact(
    link: str,
    link_text: str | None = None,
    key: str | None = None,
    description: str | None = None,
    client: Any = None,
) -> uuid.UUID:
    """Record a link artifact; returns its id."""
    return await _create(
        LinkArtifact(link=link, link_text=link_text, key=key, description=description)
    )


async def acreate_markdown_artifact(
    markdown: str, key: str | None = None, description: str | None = None
) -> uuid.UUID:
    """Record a markdown artifact; returns its id."""
    return await _create(MarkdownArtifact(markdown=markdown, key=key, description=description))


async def acreate_table_artifact(
    table: Table, key: str | None = None, description: str | None = None
) -> uuid.UUID:
    """Record a table artifact; returns its id."""
    return await _create(TableArtifact(table=table, key=key, description=description))


async def acreate_progress_artifact(
    progress: float, key: str | None = None, description: str | None = None
) -> uuid.UUID:
    """Record a progress artifact (0 to 100); returns its id. Move it on with
    ``update_progress_artifact(id, progress)``."""
    return await _create(ProgressArtifact(progress=progress, key=key, description=description))


async def aupdate_progress_artifact(
    artifact_id: uuid.UUID,
    progress: float,
    description: str | None = None,
    client: Any = None,
) -> uuid.UUID:
    """Set a progress artifact's progress (and description, when given); returns its id.
    Raises ``ObjectNotFound`` when there is no artifact with this id."""
    from millstream._engine.exceptions import ObjectNotFound

    data = await ProgressArtifact(progress=progress).aformat()
    if not await stored.update_artifact(_store(), artifact_id, data, description or None):
        raise ObjectNotFound(f"Artifact {str(artifact_id)!r} not found")
    return artifact_id


async def acreate_image_artifact(
    image_url: str, key: str | None = None, description: str | None = None
) -> uuid.UUID:
    """Record an image artifact (shown from ``image_url``); returns its id."""
    return await _create(ImageArtifact(image_url=image_url, key=key, description=description))


create_link_artifact = dispatch(acreate_link_artifact)
create_markdown_artifact = dispatch(acreate_markdown_artifact)
create_table_artifact = dispatch(acreate_table_artifact)
create_progress_artifact = dispatch(acreate_progress_artifact)
update_progress_artifact = dispatch(aupdate_progress_artifact)
create_image_artifact = dispatch(acreate_image_artifact)

__all__ = [
    "Artifact",
    "ImageArtifact",
    "LinkArtifact",
    "MarkdownArtifact",
    "ProgressArtifact",
    "TableArtifact",
    "acreate_image_artifact",
    "acreate_link_artifact",
    "acreate_markdown_artifact",
    "acreate_progress_artifact",
    "acreate_table_artifact",
    "aupdate_progress_artifact",
    "create_image_artifact",
    "create_link_artifact",
    "create_markdown_artifact",
    "create_progress_artifact",
    "create_table_artifact",
    "update_progress_artifact",
]
