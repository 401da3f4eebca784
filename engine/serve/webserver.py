"""A worker's local HTTP API (the ``serve`` extra: starlette + uvicorn).

Routes: ``GET /health`` (``{"status": "ok"}``, no token needed, nothing else said),
``GET /deployments``, ``POST /deployments/{flow}/{deployment}/run`` (``{"parameters": {...}}``
-> 201 ``{"flow_run_id": ...}``), ``GET /flow_runs/{id}`` (its state, and its result when it
was persisted) and ``GET /openapi.json`` (the OpenAPI 3.1 description).

Bound to 127.0.0.1 by default. With ``MILLSTREAM_SERVE_TOKEN`` set every route but ``/health``
needs ``Authorization: Bearer <token>``; a bind to any other address without a token is refused
at start (``check_bind``). Every request goes through ``guard.RequestGuard``: foreign
``Host``/``Origin`` -> 403, a body that is not ``application/json`` -> 415, a body over
``MILLSTREAM_SERVE_WEBSERVER_MAX_BODY_BYTES`` -> 413 before it is read; more than
``MILLSTREAM_SERVE_WEBSERVER_MAX_INFLIGHT`` triggers at once -> 429 with ``Retry-After``.

``build_app`` returns the ASGI app, to be mounted into an application's own (the SDK's
``millstream.deployments.http_api``); ``serve_http`` runs it with uvicorn's public ``Server``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import msgspec

from millstream._engine import observe
from millstream._engine.exceptions import (
    ConfigurationError,
    NotSupportedError,
    ObjectNotFound,
    ParameterTypeError,
)
from millstream._engine.model.states import ResultLoader
from millstream._engine.serve.guard import RequestGuard, is_loopback

Trigger = Callable[[str, dict[str, Any]], Awaitable[uuid.UUID]]
Reader = Callable[[uuid.UUID], Awaitable[Any]]

_EXTRA = "the worker's HTTP API needs the 'serve' extra: pip install 'millstream[serve]'"


def check_bind(settings: Any) -> None:
    """Refuse, with one line, a bind that would serve other machines without a token."""
    host = settings.serve.webserver_host
    if not is_loopback(host) and not settings.serve.token:
        raise ConfigurationError(
            f"Refusing to serve the HTTP API on {host!r} without a token: set "
            "MILLSTREAM_SERVE_TOKEN, or bind to 127.0.0.1 (MILLSTREAM_SERVE_WEBSERVER_HOST)"
        )


def allowed_hosts(settings: Any) -> list[str]:
    """The ``Host`` names served: the loopback names, the bind address and
    ``MILLSTREAM_SERVE_WEBSERVER_ALLOWED_HOSTS``; on another address than loopback with none
    listed, any (the token, required there, is what protects it)."""
    serve = settings.serve
    listed = list(serve.webserver_allowed_hosts)
    if not listed and not is_loopback(serve.webserver_host):
        listed = ["*"]
    return [*listed, serve.webserver_host]


def build_app(
    deployments: Iterable[Any],
    *,
    trigger: Trigger,
    read_flow_run: Reader,
    token: str | None,
    allowed_hosts: Iterable[str] = (),
    max_body_bytes: int = 1_048_576,
    max_inflight: int = 256,
) -> Any:
    """The ASGI app. ``trigger(name, parameters)`` creates a run and returns its id;
    ``read_flow_run(id)`` reads one back (``ObjectNotFound`` when there is none)."""
    try:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route
    except ImportError:
        raise NotSupportedError(_EXTRA) from None

    by_name = {f"{d.flow_name}/{d.name}": d for d in deployments}
    inflight = 0

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def list_deployments(request: Request) -> JSONResponse:
        return JSONResponse(
            [
                {"name": name, "id": str(d.id), "parameters": d.parameters}
                for name, d in sorted(by_name.items())
            ]
        )

    async def run(request: Request) -> JSONResponse:
        nonlocal inflight
        name = f"{request.path_params['flow']}/{request.path_params['deployment']}"
        if name not in by_name:
            return JSONResponse({"detail": f"deployment {name!r} is not served here"}, 404)
        if inflight >= max_inflight:
            return JSONResponse(
                {"detail": f"{inflight} triggers are being handled; retry shortly"},
                status_code=429,
                headers={"Retry-After": "1"},
            )
        inflight += 1
        try:
            return await _trigger(request, name)
        finally:
            inflight -= 1

    async def _trigger(request: Request, name: str) -> JSONResponse:
        raw = await request.body()
        try:
            body = msgspec.json.decode(raw) if raw else {}
        except msgspec.DecodeError as exc:
            return JSONResponse({"detail": f"body is not JSON: {exc}"}, status_code=400)
        if not isinstance(body, dict) or not isinstance(body.get("parameters", {}), dict):
            return JSONResponse(
                {"detail": 'body must be an object like {"parameters": {...}}'}, 422
            )
        try:
            # A traceparent header (W3C) makes the served run's span a child of the caller's.
            with observe.attached(request.headers):
                run_id = await trigger(name, body.get("parameters") or {})
        except ParameterTypeError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=422)
        except ObjectNotFound as exc:
            return JSONResponse({"detail": str(exc)}, status_code=404)
        return JSONResponse(
            {"flow_run_id": str(run_id), "url": f"/flow_runs/{run_id}"}, status_code=201
        )

    async def flow_run(request: Request) -> JSONResponse:
        try:
            run_id = uuid.UUID(request.path_params["id"])
        except ValueError:
            return JSONResponse({"detail": "not a flow run id"}, status_code=404)
        try:
            found = await read_flow_run(run_id)
        except ObjectNotFound:
            return JSONResponse({"detail": f"flow run {run_id} not found"}, status_code=404)
        return JSONResponse(await _run_json(found))

    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(openapi_document(by_name, secured=token is not None))

    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/deployments", list_deployments),
            Route("/deployments/{flow}/{deployment}/run", run, methods=["POST"]),
            Route("/flow_runs/{id}", flow_run),
            Route("/openapi.json", openapi),
        ]
    )
    return RequestGuard(
        app,
        allowed_hosts=allowed_hosts,
        token=token,
        public_paths=("/health",),
        max_body_bytes=max_body_bytes,
        json_only=True,
    )


async def _run_json(run: Any) -> dict[str, Any]:
    state = run.state
    out: dict[str, Any] = {
        "id": str(run.id),
        "name": run.name,
        "flow_name": run.flow_name,
        "deployment_id": str(run.deployment_id) if run.deployment_id else None,
        "parameters": run.parameters,
        "state": None,
        "start_time": run.start_time.isoformat() if run.start_time else None,
        "end_time": run.end_time.isoformat() if run.end_time else None,
        "result_persisted": False,
    }
    if state is None:
        return out
    out["state"] = {
        "type": state.type.value,
        "name": state.name,
        "message": state.message,
        "timestamp": state.timestamp.isoformat(),
    }
    if state.type.value == "COMPLETED" and isinstance(state.data, ResultLoader):
        out["result_persisted"] = True
        # A persisted result may be a file under the storage root: loaded off the loop.
        value = await asyncio.to_thread(state.data.load)
        try:
            out["result"] = msgspec.json.decode(msgspec.json.encode(value))
        except (TypeError, msgspec.EncodeError, ValueError):
            out["result_repr"] = repr(value)[:10_000]
    return out


def openapi_document(by_name: dict[str, Any], *, secured: bool) -> dict[str, Any]:
    """The OpenAPI 3.1 description of the routes (each served deployment's parameters too)."""
    error = {"$ref": "#/components/schemas/Error"}
    run_paths: dict[str, Any] = {}
    for name, dep in sorted(by_name.items()):
        schema = getattr(dep, "parameter_openapi_schema", None) or {"type": "object"}
        run_paths[f"/deployments/{name}/run"] = {
            "post": {
                "summary": f"Trigger a run of {name}",
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"parameters": schema},
                            }
                        }
                    },
                },
                "responses": {
                    "201": {"description": "created", "content": _json({"type": "object"})},
                    **{
                        code: {"description": text, "content": _json(error)}
                        for code, text in (
                            ("404", "not served here"),
                            ("413", "body too large"),
                            ("415", "not JSON"),
                            ("422", "bad parameters"),
                            ("429", "too many triggers at once"),
                        )
                    },
                },
            }
        }
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "Millstream worker", "version": "1"},
        "paths": {
            "/health": {
                "get": {
                    "summary": "Liveness (no token needed)",
                    "security": [],
                    "responses": {"200": {"description": "ok"}},
                }
            },
            "/deployments": {
                "get": {"summary": "Served deployments", "responses": {"200": {"description": ""}}}
            },
            "/flow_runs/{id}": {
                "get": {
                    "summary": "A flow run: its state, and its result when persisted",
                    "parameters": [
                        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {
                        "200": {"description": "the run"},
                        "404": {"description": "not found", "content": _json(error)},
                    },
                }
            },
            **run_paths,
        },
        "components": {
            "schemas": {"Error": {"type": "object", "properties": {"detail": {"type": "string"}}}}
        },
    }
    if secured:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
    return doc


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


async def serve_http(
    trigger: Trigger, read_flow_run: Reader, deployments: Any, settings: Any
) -> None:
    """Run the HTTP API until cancelled, with uvicorn's public ``Server.serve()``."""
    check_bind(settings)
    try:
        import uvicorn
    except ImportError:
        raise NotSupportedError(_EXTRA) from None

    serve = settings.serve
    app = build_app(
        deployments,
        trigger=trigger,
        read_flow_run=read_flow_run,
        token=serve.token,
        allowed_hosts=allowed_hosts(settings),
        max_body_bytes=serve.webserver_max_body_bytes,
        max_inflight=serve.webserver_max_inflight,
    )
    config = uvicorn.Config(
        app,
        host=serve.webserver_host,
        port=serve.webserver_port,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    # serve() takes SIGINT/SIGTERM only on the main thread, and hands a signal it caught back
    # to the previous handler (the worker's graceful shutdown) once it has stopped.
    task = asyncio.ensure_future(server.serve())
    try:
        await asyncio.shield(task)
    finally:
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)
