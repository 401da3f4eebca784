"""The client's artifact methods, under Prefect's names: ``read_artifacts``,
``read_latest_artifacts`` (the newest of each key), ``create_artifact``, ``update_artifact``
and ``delete_artifact``. Mixed into ``PrefectClient``; the blocking twins into
``SyncPrefectClient``."""

from __future__ import annotations

import uuid
from typing import Any

from millstream._engine.exceptions import ObjectNotFound
from millstream._engine.model.artifacts import Artifact, ArtifactCollection, check_key
from millstream._engine.model.ids import new_id
from millstream._engine.store import Store
from millstream._engine.store import artifacts as stored
from millstream.client._twins import blocking as _blocking

__all__ = ["ArtifactClientMixin", "SyncArtifactClientMixin"]


class ArtifactClientMixin:
    """Artifact reads and writes of the async client."""

    _store: Store

    async def read_artifacts(
        self,
        *,
        artifact_filter: Any = None,
        flow_run_filter: Any = None,
        task_run_filter: Any = None,
        sort: Any = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Artifact]:
        """Artifacts matching every filter, newest first unless ``sort`` says otherwise."""
        return await stored.read_artifacts(
            self._store,
            artifact_filter=artifact_filter,
            flow_run_filter=flow_run_filter,
            task_run_filter=task_run_filter,
            sort=sort,
            limit=limit,
            offset=offset,
        )

    async def read_latest_artifacts(
        self,
        *,
        artifact_filter: Any = None,
        flow_run_filter: Any = None,
        task_run_filter: Any = None,
        sort: Any = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[ArtifactCollection]:
        """The newest artifact of each key (keyless artifacts have none) matching the filters."""
        return await stored.read_latest_artifacts(
            self._store,
            artifact_filter=artifact_filter,
            flow_run_filter=flow_run_filter,
            task_run_filter=task_run_filter,
            sort=sort,
            limit=limit,
            offset=offset,
        )

    async def create_artifact(self, artifact: Any) -> Artifact:
        """Record an artifact given with Prefect's ``ArtifactCreate`` fields (``key``, ``type``,
        ``description``, ``data``, ``metadata_``, ``flow_run_id``, ``task_run_id``)."""
        key = getattr(artifact, "key", None)
        check_key(key)
        record = Artifact(
            id=new_id(),
            key=key,
            type=getattr(artifact, "type", None),
            description=getattr(artifact, "description", None),
            data=getattr(artifact, "data", None),
            metadata_=getattr(artifact, "metadata_", None),
            flow_run_id=getattr(artifact, "flow_run_id", None),
            task_run_id=getattr(artifact, "task_run_id", None),
        )
        await stored._wait(stored.put_artifact(self._store, record))
        found = await stored.read_artifact(self._store, record.id)
        assert found is not None
        return found

    async def update_artifact(self, artifact_id: uuid.UUID | str, artifact: Any) -> None:
        """Replace an artifact's ``data`` (and ``description`` when given: Prefect's
        ``ArtifactUpdate``); raises ``ObjectNotFound``."""
        current = await stored.read_artifact(self._store, artifact_id)
        if current is None:
            raise ObjectNotFound(f"Artifact {str(artifact_id)!r} not found")
        data = getattr(artifact, "data", None)
        description = getattr(artifact, "description", None)
        await stored.update_artifact(self._store, artifact_id, data, description)

    async def delete_artifact(self, artifact_id: uuid.UUID | str) -> None:
        """Delete an artifact; raises ``ObjectNotFound`` when there is none with this id."""
        if not await stored.delete_artifact(self._store, artifact_id):
            raise ObjectNotFound(f"Artifact {str(artifact_id)!r} not found")


class SyncArtifactClientMixin:
    """The blocking twins of ``ArtifactClientMixin``'s methods."""

    read_artifacts = _blocking(ArtifactClientMixin.read_artifacts)
    read_latest_artifacts = _blocking(ArtifactClientMixin.read_latest_artifacts)
    create_artifact = _blocking(ArtifactClientMixin.create_artifact)
    update_artifact = _blocking(ArtifactClientMixin.update_artifact)
    delete_artifact = _blocking(ArtifactClientMixin.delete_artifact)
