"""The ``artifacts`` commands: list artifacts (the newest of each key, or every version of
one key) and inspect a key's versions, as Prefect's ``prefect artifact ls/inspect``."""

from __future__ import annotations

import argparse

import msgspec

from millstream._engine.exceptions import ObjectNotFound
from millstream._engine.model.artifacts import Artifact, ArtifactCollection
from millstream._tables import render_table, when
from millstream.cli.output import EXIT_OK, as_json
from millstream.client.orchestration import get_client
from millstream.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

__all__ = ["cmd_artifacts_inspect", "cmd_artifacts_ls"]


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _fields(artifact: Artifact | ArtifactCollection) -> dict[str, object]:
    fields: dict[str, object] = msgspec.to_builtins(artifact, enc_hook=str)
    return fields


def cmd_artifacts_ls(args: argparse.Namespace) -> int:
    """``artifacts ls``: the newest artifact of each key (``--all``: every artifact)."""
    with get_client(sync_client=True) as client:
        found: list[Artifact] | list[ArtifactCollection]
        if args.all:
            found = client.read_artifacts(limit=args.limit)
        else:
            found = client.read_latest_artifacts(limit=args.limit)
    if args.json:
        print(as_json([_fields(a) for a in found]))
        return EXIT_OK
    rows = [
        [
            str(a.latest_id if isinstance(a, ArtifactCollection) else a.id),
            a.key or "",
            a.type or "",
            _short(str(a.data), 40),
            when(a.updated) if a.updated else "",
        ]
        for a in found
    ]
    print(render_table(["ID", "KEY", "TYPE", "DATA", "UPDATED"], rows))
    return EXIT_OK


def cmd_artifacts_inspect(args: argparse.Namespace) -> int:
    """``artifacts inspect KEY``: every version of a key, newest first (``--json``: as JSON)."""
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[args.key])),
            limit=args.limit,
        )
    if not found:
        raise ObjectNotFound(f"Artifact {args.key!r} not found")
    if args.json:
        print(as_json([_fields(a) for a in found]))
        return EXIT_OK
    for artifact in found:
        print(f"{artifact.id}  {artifact.type or '-'}  {when(artifact.updated)}")
        if artifact.description:
            print(f"  description: {artifact.description}")
        print(f"  flow run: {artifact.flow_run_id or '-'}  task run: {artifact.task_run_id or '-'}")
        print(f"  data: {artifact.data}")
    return EXIT_OK
