"""The dashboard's pages: runs, a flow run, a task run, deployments, and the JSON the pages poll.

Each handler reads through the store's typed reads (``engine/store/dashboard.py``) and renders
a template; links are made under the app's mount prefix (``root_path``).
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from millstream._engine.exceptions import ObjectNotFound
from millstream._engine.model.records import FlowRun, TaskRun
from millstream._engine.store import Store, get_store
from millstream._engine.store import artifacts as stored_artifacts
from millstream._engine.store import dashboard as reads
from millstream._engine.store.rows import as_uuid
from millstream.dashboard import render
from millstream.dashboard.security import LocalAccessMiddleware

PAGE_SIZE = 50
TASK_RUN_LIMIT = 500
LOG_LIMIT = 1_000
CSRF_COOKIE = "millstream_csrf"
# Scripts only from the app itself; styles may be set inline (the timeline's bar positions);
# images from anywhere (image artifacts show public URLs).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: https: http:; form-action 'self'; frame-ancestors 'self'; "
    "base-uri 'none'; object-src 'none'"
)

__all__ = ["CSRF_COOKIE", "Dashboard", "build"]


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("millstream.dashboard", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(
        when=render.when,
        duration=render.duration,
        pretty=render.pretty_json,
        fields=render.fields_text,
        markdown=render.markdown,
        colour=lambda state: render.STATE_COLOURS.get(str(state or ""), "#999"),
        level_name=lambda level: _level_name(int(level)),
        pager_query=_pager_query,
        schedules=render.schedules,
        is_web_url=lambda url: str(url).lower().startswith(("https://", "http://")),
    )
    env.globals.update(table=render.table, levels=render.LEVELS)
    return env


class Dashboard:
    """The pages over one database."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.env = _environment()

    # -- rendering ----------------------------------------------------------------------------
    def page(self, request: Request, template: str, status: int = 200, **context: Any) -> Response:
        """A template rendered with the base context; sets the CSRF cookie on first visit."""
        csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        html = self.env.get_template(template).render(
            base=request.scope.get("root_path", ""),
            csrf=csrf,
            request_path=request.url.path,
            query=request.query_params,
            state_types=render.STATE_TYPES,
            **context,
        )
        response = HTMLResponse(html, status_code=status)
        if request.cookies.get(CSRF_COOKIE) != csrf:
            response.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="strict")
        response.headers["content-security-policy"] = CSP
        response.headers["x-content-type-options"] = "nosniff"
        return response

    # -- pages --------------------------------------------------------------------------------
    async def runs(self, request: Request) -> Response:
        """Flow runs, newest first, filtered and paged."""
        query = _run_query(request)
        before = _cursor(request.query_params.get("before"))
        runs, cursor = await reads.read_runs_page(self.store, query, before, PAGE_SIZE)
        counts = await reads.read_state_counts(self.store, query)
        return self.page(
            request,
            "runs.html",
            runs=runs,
            counts=counts,
            total=sum(counts.values()),
            flows=await reads.read_flow_names(self.store),
            deployments=await self.store.read_deployments(limit=200),
            next_cursor=_cursor_text(cursor),
            filters=query,
        )

    async def flow_run(self, request: Request) -> Response:
        """One flow run: parameters, states, result, timeline, task runs, logs, artifacts."""
        run = await self._flow_run(request)
        states = await self.store.read_flow_run_states(run.id)
        task_runs = await reads.read_task_runs(self.store, run.id, TASK_RUN_LIMIT)
        subflows = await reads.read_subflow_runs(self.store, run.id, TASK_RUN_LIMIT)
        level = _level(request)
        logs = await reads.read_logs_after(self.store, run.id, 0, level, LOG_LIMIT)
        now = dt.datetime.now(dt.UTC)
        # A subflow call is also recorded as a task run of the parent (Prefect's "parent
        # task run"): the timeline shows the subflow run in its place.
        wrappers = {sf.parent_task_run_id for sf in subflows}
        rows: list[FlowRun | TaskRun] = [t for t in task_runs if t.id not in wrappers]
        rows.extend(subflows)
        rows.sort(key=lambda r: r.start_time or r.created or now)
        deployment = None
        if run.deployment_id is not None:
            deployment = await self.store.read_deployment(run.deployment_id)
        return self.page(
            request,
            "flow_run.html",
            run=run,
            states=list(reversed(states)),
            task_runs=task_runs,
            subflows=subflows,
            bars=render.timeline(run.start_time, rows, now),
            logs=logs,
            level=level,
            last_log_id=logs[-1].id if logs else 0,
            # The traceback the engine logged when the run (or one of its tasks) failed.
            traceback=next(
                (line.message for line in logs if line.level >= 40 and "Traceback" in line.message),
                None,
            ),
            live=run.state is not None and not run.state.is_final(),
            result=render.result_preview(await self.store.read_flow_run_result(run.id)),
            artifacts=await stored_artifacts.read_artifacts(
                self.store, artifact_filter=_RunArtifacts(flow_run_id=run.id), limit=200
            ),
            deployment=deployment,
        )

    async def flow_run_logs(self, request: Request) -> Response:
        """A flow run's log lines after ``after`` (JSON, for the live view), and its state."""
        run = await self._flow_run(request)
        try:
            after = int(request.query_params.get("after", "0"))
        except ValueError:
            raise HTTPException(400, "after must be an integer") from None
        logs = await reads.read_logs_after(self.store, run.id, after, _level(request), LOG_LIMIT)
        return JSONResponse(
            {
                "state": run.state_type.value if run.state_type else None,
                "state_name": run.state_name,
                "final": run.state is not None and run.state.is_final(),
                "logs": [
                    {
                        "id": line.id,
                        "time": render.when(line.timestamp),
                        "level": _level_name(line.level),
                        "name": line.name,
                        "message": line.message,
                        "extra": render.fields_text(line.extra),
                    }
                    for line in logs
                ],
            }
        )

    async def task_run(self, request: Request) -> Response:
        """One task run: inputs (parameter values, and the upstream task runs they came
        from), states, cache key, result, logs, artifacts."""
        try:
            run = await self.store.read_task_run(as_uuid(request.path_params["id"]))
        except ObjectNotFound:
            raise HTTPException(404, "No such task run") from None
        found = await self.store.fetchone("select_task_run_result", (run.id.bytes,))
        logs = await self.store.read_logs(log_filter=_TaskLogs(run.id), limit=LOG_LIMIT)
        return self.page(
            request,
            "task_run.html",
            run=run,
            upstream=await reads.read_upstream_runs(self.store, run),
            states=list(reversed(await self.store.read_task_run_states(run.id))),
            result=render.result_preview(found[0] if found is not None else None),
            logs=logs,
            artifacts=await stored_artifacts.read_artifacts(
                self.store, artifact_filter=_RunArtifacts(task_run_id=run.id), limit=200
            ),
        )

    async def artifacts(self, request: Request) -> Response:
        """The newest artifact of each key."""
        latest = await stored_artifacts.read_latest_artifacts(self.store, sort="KEY_ASC", limit=500)
        return self.page(request, "artifacts.html", latest=latest)

    async def artifact_key(self, request: Request) -> Response:
        """Every version of one artifact key, newest first."""
        key = request.path_params["key"]
        versions = await stored_artifacts.read_artifacts(
            self.store, artifact_filter=_KeyArtifacts(key), sort="CREATED_DESC", limit=100
        )
        if not versions:
            raise HTTPException(404, f"No artifact with key {key!r}")
        return self.page(request, "artifact_key.html", key=key, versions=versions)

    async def deployments(self, request: Request) -> Response:
        """Deployments with their schedules, next and last runs; runs held by workers."""
        items = []
        for deployment in await self.store.read_deployments(limit=200):
            upcoming, last = await reads.read_deployment_runs(self.store, deployment["id"], 5)
            items.append({"deployment": deployment, "upcoming": upcoming, "last": last})
        return self.page(
            request,
            "deployments.html",
            items=items,
            leases=await reads.read_leases(self.store),
            now=dt.datetime.now(dt.UTC),
        )

    async def deployment(self, request: Request) -> Response:
        """One deployment: its trigger form, schedules and runs."""
        deployment = await self._deployment(request)
        return await self.deployment_page(request, deployment, {}, None)

    async def deployment_page(
        self,
        request: Request,
        deployment: dict[str, Any],
        given: dict[str, str],
        errors: list[str] | None,
    ) -> Response:
        """The deployment page, with the values and errors of a refused trigger."""
        upcoming, last = await reads.read_deployment_runs(self.store, deployment["id"], 10)
        return self.page(
            request,
            "deployment.html",
            status=400 if errors else 200,
            deployment=deployment,
            fields=_parameter_fields(deployment),
            given=given,
            errors=errors or [],
            upcoming=upcoming,
            last=last,
        )

    # -- lookups ------------------------------------------------------------------------------
    async def _flow_run(self, request: Request) -> FlowRun:
        try:
            return await self.store.read_flow_run(as_uuid(request.path_params["id"]))
        except ObjectNotFound:
            raise HTTPException(404, "No such flow run") from None

    async def _deployment(self, request: Request) -> dict[str, Any]:
        try:
            found = await self.store.read_deployment(as_uuid(request.path_params["id"]))
        except ObjectNotFound:
            found = None
        if found is None:
            raise HTTPException(404, "No such deployment")
        return found


class _Ids:
    """``any_`` of one value (the filters' shape)."""

    def __init__(self, value: object) -> None:
        self.any_ = [value]


class _RunArtifacts:
    """An artifact filter on one run (read by attribute, like the client's filters)."""

    def __init__(
        self, flow_run_id: uuid.UUID | None = None, task_run_id: uuid.UUID | None = None
    ) -> None:
        self.flow_run_id = _Ids(flow_run_id) if flow_run_id else None
        self.task_run_id = _Ids(task_run_id) if task_run_id else None


class _KeyArtifacts:
    """An artifact filter on one key."""

    def __init__(self, key: str) -> None:
        self.key = _Ids(key)


class _TaskLogs:
    """A log filter on one task run."""

    def __init__(self, task_run_id: uuid.UUID) -> None:
        self.task_run_id = _Ids(task_run_id)


def _pager_query(params: Any, cursor: str | None) -> str:
    items = [(k, v) for k, v in params.multi_items() if k != "before"]
    if cursor is not None:
        items.append(("before", cursor))
    return urlencode(items)


def _level(request: Request) -> int:
    name = request.query_params.get("level", "")
    if not name:
        return 0
    if name.upper() in render.LEVELS:
        return render.LEVELS[name.upper()]
    raise HTTPException(400, f"Unknown log level {name!r}")


def _level_name(level: int) -> str:
    return next((n for n, v in render.LEVELS.items() if v == level), str(level))


def _time(text: str | None, what: str) -> dt.datetime | None:
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise HTTPException(400, f"{what} must be an ISO time, got {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _run_query(request: Request) -> reads.RunQuery:
    params = request.query_params
    states = [s.upper() for s in params.getlist("state") if s]
    unknown = [s for s in states if s not in render.STATE_COLOURS]
    if unknown:
        raise HTTPException(400, f"Unknown state {unknown[0]!r}")
    deployment = params.get("deployment") or None
    try:
        deployment_id = as_uuid(deployment) if deployment else None
    except ObjectNotFound:
        raise HTTPException(400, "deployment must be a deployment id") from None
    return reads.RunQuery(
        flows=[f for f in params.getlist("flow") if f],
        deployment_id=deployment_id,
        states=states,
        tag=params.get("tag") or None,
        since=_time(params.get("since"), "since"),
        until=_time(params.get("until"), "until"),
        search=(params.get("q") or "").strip() or None,
    )


def _cursor(text: str | None) -> tuple[int, bytes] | None:
    if not text:
        return None
    try:
        created, run_id = text.split("_", 1)
        return int(created), uuid.UUID(run_id).bytes
    except ValueError:
        raise HTTPException(400, "Malformed page cursor") from None


def _cursor_text(cursor: tuple[int, bytes] | None) -> str | None:
    return None if cursor is None else f"{cursor[0]}_{uuid.UUID(bytes=cursor[1])}"


def _parameter_fields(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    """The trigger form's fields: each parameter with its type, default and whether it is
    required (from the parameter schema when there is one)."""
    schema = deployment.get("parameter_schema") or {}
    properties: dict[str, Any] = schema.get("properties") or {}
    required = set(schema.get("required") or ())
    defaults = deployment.get("parameters") or {}
    names = list(dict.fromkeys([*properties, *defaults]))
    fields = []
    for name in names:
        spec = properties.get(name) or {}
        default = defaults.get(name, spec.get("default"))
        fields.append(
            {
                "name": name,
                "type": spec.get("type") or "",
                "required": name in required and name not in defaults,
                "default": "" if default is None else render.pretty_json(default),
            }
        )
    return fields


def build(
    database_path: Path, *, token: str | None, allowed_hosts: Iterable[str] = ()
) -> Starlette:
    """The Starlette app of the dashboard over the database at ``database_path``."""
    from millstream.dashboard import actions

    dash = Dashboard(get_store(database_path))
    do = actions.Actions(dash)
    static = resources.files("millstream.dashboard").joinpath("static")
    routes = [
        Route("/", dash.runs, name="runs"),
        Route("/flow-runs/{id}", dash.flow_run),
        Route("/flow-runs/{id}/logs.json", dash.flow_run_logs),
        Route("/flow-runs/{id}/{action}", do.flow_run_action, methods=["POST"]),
        Route("/flow-runs", do.delete_runs, methods=["POST"]),
        Route("/task-runs/{id}", dash.task_run),
        Route("/artifacts", dash.artifacts),
        Route("/artifacts/{key}", dash.artifact_key),
        Route("/deployments", dash.deployments),
        Route("/deployments/{id}", dash.deployment),
        Route("/deployments/{id}/run", do.trigger, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(static)), name="static"),
    ]
    middleware = [Middleware(LocalAccessMiddleware, token=token, allowed_hosts=allowed_hosts)]
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: dash_error(dash)},
    )


def dash_error(dash: Dashboard) -> Any:
    """The error page (plain text for the JSON routes)."""

    async def handler(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if request.url.path.endswith(".json"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        return dash.page(request, "error.html", status=exc.status_code, message=exc.detail)

    return handler
