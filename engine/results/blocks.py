"""Saved blocks: ``LocalFileSystem(...).save("name")`` keeps its fields as a JSON file under the
home directory (``<home>/blocks/<block type>/<name>.json``), read back by ``load`` and by the
``results.default_storage_block`` setting (``"local-file-system/<name>"``)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from millstream._engine.exceptions import ConfigurationError
from millstream._engine.results.storage import LocalFileSystem

LOCAL_FILE_SYSTEM = "local-file-system"


def check_name(name: str) -> str:
    """``name`` if it can name a saved block (a file name); ``ValueError`` otherwise."""
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name[0] == ".":
        raise ValueError(
            f"Block name {name!r} must be a non-empty name without '/' (like 'my-storage')"
        )
    return name


def block_path(home: Path, slug: str, name: str) -> Path:
    """Where the block ``slug/name`` is kept."""
    return home / "blocks" / slug / f"{check_name(name)}.json"


def read_block(home: Path, slug: str, name: str) -> dict[str, Any] | None:
    """The saved fields of ``slug/name`` (with its ``id``), or None when none is saved."""
    try:
        doc = json.loads(block_path(home, slug, name).read_text())
    except FileNotFoundError:
        return None
    return doc if isinstance(doc, dict) else None


def write_block(
    home: Path, slug: str, name: str, fields: dict[str, Any], overwrite: bool
) -> uuid.UUID:
    """Save ``fields`` as ``slug/name`` (atomically); the block's id, kept across overwrites.
    ``ValueError`` when the name is taken and not ``overwrite``."""
    path = block_path(home, slug, name)
    existing = read_block(home, slug, name)
    if existing is not None and not overwrite:
        raise ValueError(
            "You are attempting to save values with a name that is already in use for this "
            "block type. If you would like to overwrite the values that are saved, then save "
            "with `overwrite=True`."
        )
    block_id = uuid.UUID(existing["id"]) if existing is not None else uuid.uuid4()
    doc = {**fields, "id": str(block_id)}
    LocalFileSystem(path.parent).write(path.name, json.dumps(doc).encode())
    return block_id


def default_storage_from_block(home: Path, reference: str) -> LocalFileSystem:
    """The storage named by ``results.default_storage_block`` (``"local-file-system/<name>"``)."""
    slug, _, name = reference.partition("/")
    if slug != LOCAL_FILE_SYSTEM or not name:
        raise ConfigurationError(
            f"Setting results.default_storage_block has a bad value {reference!r}: expected "
            f"'{LOCAL_FILE_SYSTEM}/<name>' of a LocalFileSystem saved with .save('<name>')"
        )
    doc = read_block(home, slug, name)
    if doc is None:
        raise ConfigurationError(
            f"Setting results.default_storage_block names {reference!r}, but no "
            f"LocalFileSystem was saved as {name!r} (under {home / 'blocks'})"
        )
    storage = LocalFileSystem(doc["basepath"])
    storage._block_document_id = uuid.UUID(doc["id"])  # type: ignore[attr-defined]
    return storage


def default_results_dir(settings: Any) -> Path:
    """Where results go when nothing else says: the saved default block's directory, else
    ``results.local_storage_path``."""
    reference = settings.results.default_storage_block
    if reference:
        return default_storage_from_block(settings.home, reference).basepath
    return Path(settings.results.local_storage_path)
