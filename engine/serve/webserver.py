"""A worker's local HTTP API (the ``serve`` extra: starlette + uvicorn): health, the served
deployments, and triggering a run. Bound to 127.0.0.1 by default; with ``MILLSTREAM_SERVE_TOKEN``
set, every request needs ``Authorization: Bearer <token>``."""

from __future__ import annotations

import hmac
from typing import Any

from millstream._engine.exceptions import NotSupportedError, ObjectNotFound, ParameterTypeError


def build_app(deployments: Any, token: str | None, trigger: Any) -> Any:
    """The ASGI app. ``trigger(name, parameters)`` creates a run and returns its id."""
    try:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route
    except ImportError:
        raise NotSupportedError(
            "webserver=True needs the 'serve' extra: pip install 'millstream[serve]'"
        ) from None

    by_name = {f"{d.flow_name}/{d.name}": d for d in deployments}

    def authorized(request: Request) -> bool:
        if token is None:
            return True
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())

    async def health(request: Request) -> JSONResponse:
        if not authorized(request):
            return JSONResponse({"detail": "missing or wrong bearer token"}, status_code=401)
        return JSONResponse({"status": "ok"})

    async def list_deployments(request: Request) -> JSONResponse:
        if not authorized(request):
            return JSONResponse({"detail": "missing or wrong bearer token"}, status_code=401)
        return JSONResponse(
            [
                {"name": name, "id": str(d.id), "parameters": d.parameters}
                for name, d in sorted(by_name.items())
            ]
        )

    async def run(request: Request) -> JSONResponse:
        if not authorized(request):
            return JSONResponse({"detail": "missing or wrong bearer token"}, status_code=401)
        name = f"{request.path_params['flow']}/{request.path_params['deployment']}"
        if name not in by_name:
            return JSONResponse({"detail": f"deployment {name!r} is not served here"}, 404)
        try:
            body = await request.json() if await request.body() else {}
        except ValueError as exc:
            return JSONResponse({"detail": f"body is not JSON: {exc}"}, status_code=400)
        if not isinstance(body, dict) or not isinstance(body.get("parameters", {}), dict):
            return JSONResponse(
                {"detail": 'body must be an object like {"parameters": {...}}'}, 422
            )
        try:
            run_id = await trigger(name, body.get("parameters") or {})
        except ParameterTypeError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=422)
        except ObjectNotFound as exc:
            return JSONResponse({"detail": str(exc)}, status_code=404)
        return JSONResponse({"flow_run_id": str(run_id)}, status_code=201)

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/deployments", list_deployments),
            Route("/deployments/{flow}/{deployment}/run", run, methods=["POST"]),
        ]
    )


async def serve_http(trigger: Any, deployments: Any, settings: Any) -> None:
    """Run the HTTP API until cancelled (``trigger(name, parameters)`` -> flow run id)."""
    try:
        import uvicorn
    except ImportError:
        raise NotSupportedError(
            "webserver=True needs the 'serve' extra: pip install 'millstream[serve]'"
        ) from None

    app = build_app(deployments, settings.serve.token, trigger)
    config = uvicorn.Config(
        app,
        host=settings.serve.webserver_host,
        port=settings.serve.webserver_port,
        log_level="warning",
        lifespan="off",
    )
    config.load()
    server = uvicorn.Server(config)
    # startup/main_loop/shutdown rather than serve(), whose signal capture would take
    # SIGTERM/SIGINT from the worker (which shuts down gracefully on them).
    server.lifespan = config.lifespan_class(config)
    await server.startup()
    try:
        await server.main_loop()
    finally:
        server.should_exit = True
        await server.shutdown()
