"""Attributes of the current run as module attributes: ``millstream.runtime.flow_run.name`` and co.

Each attribute can be mocked through the environment, e.g. ``MILLSTREAM__RUNTIME__FLOW_RUN__NAME``
(Prefect's ``PREFECT__RUNTIME__FLOW_RUN__NAME`` works too); the text is cast to the attribute's
type. This module also holds what the three submodules share.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Callable
from typing import Any

from millstream._engine.orchestrate.context import FlowRunContext, flow_run_var
from millstream._engine.settings import get_current_settings
from millstream._engine.store import Store, get_store

_PREFIXES = ("MILLSTREAM", "PREFECT")


def _cast(env_name: str, raw: str, kind: type) -> Any:
    """``raw`` (the value of ``env_name``) as a ``kind``; a ValueError names both if it is not."""
    try:
        if kind is int:
            return int(raw)
        if kind is dt.datetime:
            value = dt.datetime.fromisoformat(raw.strip())
            # A naive time is taken as UTC, as Prefect does; an aware one is converted to UTC.
            if value.tzinfo is None:
                return value.replace(tzinfo=dt.UTC)
            return value.astimezone(dt.UTC)
        if kind in (dict, list):
            value = json.loads(raw)
            if not isinstance(value, kind):
                raise ValueError(f"JSON {kind.__name__} expected")
            return value
    except ValueError as exc:
        raise ValueError(
            f"Environment variable {env_name}={raw!r} is not a valid {kind.__name__}: {exc}"
        ) from None
    return raw


def _attribute(module: str, name: str, values: dict[str, tuple[type, Callable[[], Any]]]) -> Any:
    """The value of ``millstream.runtime.<module>.<name>``: the environment override, else the
    run's."""
    entry = values.get(name)
    for prefix in _PREFIXES:
        env_name = f"{prefix}__RUNTIME__{module.upper()}__{name.upper()}"
        raw = os.environ.get(env_name)
        if raw is not None:
            # An unknown attribute can be mocked too (as text), as Prefect allows.
            return raw if entry is None else _cast(env_name, raw, entry[0])
    if entry is None:
        # Worded as Prefect's ("prefect.runtime.flow_run has no attribute 'x'").
        raise AttributeError(f"millstream.runtime.{module} has no attribute {name!r}")
    return entry[1]()


def _scheduled(ctx: FlowRunContext | None) -> dt.datetime:
    """When the current flow run was due: its expected start, else when it started or was
    created; now outside a run."""
    if ctx is not None:
        run = ctx.flow_run
        when = run.expected_start_time or run.start_time or run.created
        if when is not None:
            return when
    return dt.datetime.now(dt.UTC)


def _store() -> Store:
    # The current run's database (where its lineage is recorded), else the settings' one.
    ctx = flow_run_var.get()
    return ctx.store if ctx is not None else get_store(get_current_settings().database_path)


def _run_lookup(
    flow_run_id: uuid.UUID,
) -> tuple[uuid.UUID | None, uuid.UUID | None, dict[str, Any]] | None:
    """``(deployment_id, parent_flow_run_id, parameters)`` of a recorded flow run."""
    from millstream._sync import run_sync

    store = _store()

    async def read() -> tuple[uuid.UUID | None, uuid.UUID | None, dict[str, Any]] | None:
        await store.ensure_open()
        return await store.read_flow_run_lineage(flow_run_id)

    return run_sync(lambda _executor: read())


def _deployment_run() -> tuple[Any, str, dict[str, Any]] | None:
    """The deployment the current flow run belongs to, with the id and parameters of the
    deployment run (the run itself, or the ancestor a subflow was started from); None when
    it is not part of a deployment run."""
    ctx = flow_run_var.get()
    if ctx is None:
        return _env_deployment_run()
    run = ctx.flow_run
    if ctx.deployment is not None:
        return ctx.deployment, str(run.id), dict(run.parameters)
    # Else the nearest ancestor started from a deployment (a subflow of a served run). Such
    # runs are recorded before they start, so the database knows them.
    deployment_id = run.deployment_id.hex if run.deployment_id is not None else None
    run_id, parameters, parent = run.id, dict(run.parameters), run.parent_flow_run_id
    for _ in range(1_000):  # lineage is a tree; the bound only guards against a damaged file
        if deployment_id is not None:
            return _read_deployment(deployment_id), str(run_id), parameters
        if parent is None:
            return None
        row = _run_lookup(parent)
        if row is None:
            return None
        found_deployment, parent_id, parameters = row
        deployment_id = found_deployment.hex if found_deployment is not None else None
        run_id, parent = parent, parent_id
    return None


def _env_deployment_run() -> tuple[Any, str, dict[str, Any]] | None:
    # Outside runs: the deployment of the flow run the environment names (as Prefect reads it
    # through PREFECT__FLOW_RUN_ID), if that run came from one.
    from millstream.runtime.flow_run import _env_run

    run = _env_run()
    if run is None or run.deployment_id is None:
        return None
    return _read_deployment(run.deployment_id.hex), str(run.id), dict(run.parameters)


def _read_deployment(deployment_id: str) -> Any:
    from millstream._engine.exceptions import ObjectNotFound
    from millstream._engine.serve.deployments import read
    from millstream._sync import run_sync

    store = _store()

    async def lookup() -> Any:
        try:
            return await read(store, deployment_id)
        except ObjectNotFound:  # deleted since: still report the id
            return _Unknown(deployment_id)

    return run_sync(lambda _executor: lookup())


class _Unknown:
    """A deployment known only by its id (it was deleted after the run started)."""

    def __init__(self, deployment_id: str) -> None:
        self.id = uuid.UUID(deployment_id)
        self.name: str | None = None
        self.version: str | None = None


# The submodules use the helpers above, so they are imported last.
from millstream.runtime import deployment, flow_run, task_run  # noqa: E402

__all__ = ["deployment", "flow_run", "task_run"]
