"""Artifacts as the store keeps them: Prefect's ``Artifact`` and ``ArtifactCollection``."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec

# Prefect's rule for artifact keys (its ArtifactKey type): ^[a-z0-9-]*$.
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


def check_key(key: str | None) -> None:
    """Refuse a key Prefect refuses: only lowercase letters, numbers and dashes."""
    if key is not None and (not isinstance(key, str) or not _KEY_CHARS.issuperset(key)):
        raise ValueError(
            f"Artifact key must only contain lowercase letters, numbers, and dashes, got {key!r}"
        )


class Artifact(msgspec.Struct, kw_only=True):
    """A piece of data made by a flow or task run (a table, markdown, a link, progress...).

    ``data`` is what Prefect records: markdown text, a table as JSON text, a progress number,
    a link as markdown, an image URL.
    """

    id: uuid.UUID
    created: dt.datetime | None = None
    updated: dt.datetime | None = None
    key: str | None = None
    type: str | None = None
    description: str | None = None
    data: Any = None
    metadata_: dict[str, str] | None = None
    flow_run_id: uuid.UUID | None = None
    task_run_id: uuid.UUID | None = None


class ArtifactCollection(msgspec.Struct, kw_only=True):
    """The newest artifact of a key (Prefect's ``read_latest_artifacts`` rows); ``id`` is the
    key's own stable id, ``latest_id`` the artifact's."""

    id: uuid.UUID
    key: str
    latest_id: uuid.UUID
    created: dt.datetime | None = None
    updated: dt.datetime | None = None
    type: str | None = None
    description: str | None = None
    data: Any = None
    metadata_: dict[str, str] | None = None
    flow_run_id: uuid.UUID | None = None
    task_run_id: uuid.UUID | None = None


def collection_id(key: str) -> uuid.UUID:
    """The stable id of a key's collection."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"millstream:artifact-key:{key}")
