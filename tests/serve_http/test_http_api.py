"""The worker's HTTP API: reading runs back, OpenAPI, /health, mounting, and its guard
(Host/Origin 403, token 401, 415, 413 before the body is read, 429), over real ASGI calls and
one real uvicorn server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from typing import Any

import httpx
import pytest
from serve_http_tools import free_port, wait_until_up

from millstream import aserve, flow
from millstream._engine.serve.guard import RequestGuard
from millstream._engine.settings import temporary_settings
from millstream.deployments import http_api


@flow(persist_result=True)
def add(x: int, y: int = 1) -> int:
    return x + y


@flow
def unpersisted(x: int) -> int:
    return x


def _client(app: Any, host: str = "127.0.0.1:8080") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{host}")


async def _until(check: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_a_triggered_run_is_read_back_with_its_state_and_persisted_result():
    async def main() -> None:
        deps = [await add.ato_deployment("web"), await unpersisted.ato_deployment("plain")]
        worker = asyncio.ensure_future(aserve(*deps, print_starting_message=False))
        try:
            async with _client(http_api(*deps)) as client:
                made = await client.post("/deployments/add/web/run", json={"parameters": {"x": 41}})
                assert made.status_code == 201, made.text
                url = made.json()["url"]
                assert url == f"/flow_runs/{made.json()['flow_run_id']}"

                async def done() -> dict[str, Any] | None:
                    body = (await client.get(url)).json()
                    return body if body["state"]["type"] == "COMPLETED" else None

                body = await _until(done)
                assert body["result_persisted"] is True and body["result"] == 42
                assert body["parameters"] == {"x": 41} and body["flow_name"] == "add"
                plain = await client.post(
                    "/deployments/unpersisted/plain/run", json={"parameters": {"x": 1}}
                )
                body = await _until(lambda: done_at(client, plain.json()["url"]))
                # A served run's result is kept so that run_deployment can return it.
                assert body["result_persisted"] is ("result" in body)
                missing = await client.get(f"/flow_runs/{uuid.uuid4()}")
                assert missing.status_code == 404
                assert (await client.get("/flow_runs/not-an-id")).status_code == 404
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)

    async def done_at(client: httpx.AsyncClient, url: str) -> dict[str, Any] | None:
        body = (await client.get(url)).json()
        return body if body["state"]["type"] == "COMPLETED" else None

    asyncio.run(main())


def test_openapi_describes_the_routes_and_each_deployments_parameters():
    async def main() -> None:
        async with _client(http_api(await add.ato_deployment("web"), token="t")) as client:
            doc = (await client.get("/openapi.json", headers={"Authorization": "Bearer t"})).json()
        assert doc["openapi"].startswith("3.")
        assert {"/health", "/deployments", "/flow_runs/{id}", "/deployments/add/web/run"} <= set(
            doc["paths"]
        )
        body = doc["paths"]["/deployments/add/web/run"]["post"]["requestBody"]
        params = body["content"]["application/json"]["schema"]["properties"]["parameters"]
        assert set(params["properties"]) == {"x", "y"}
        assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"

    asyncio.run(main())


def test_health_needs_no_token_and_says_nothing_else():
    async def main() -> None:
        async with _client(http_api(await add.ato_deployment("web"), token="s3cret")) as client:
            health = await client.get("/health")
            assert health.status_code == 200 and health.json() == {"status": "ok"}
            assert "s3cret" not in health.text and "add" not in health.text
            listed = await client.get("/deployments")
            assert listed.status_code == 401 and listed.headers["www-authenticate"] == "Bearer"
            wrong = await client.get("/deployments", headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            ok = await client.get("/deployments", headers={"Authorization": "Bearer s3cret"})
            assert [d["name"] for d in ok.json()] == ["add/web"]
            run = await client.get(f"/flow_runs/{uuid.uuid4()}")
            assert run.status_code == 401

    asyncio.run(main())


def test_foreign_host_and_origin_headers_are_refused():
    async def main() -> None:
        app = http_api(await add.ato_deployment("web"))
        async with _client(app, host="evil.example:8080") as client:
            refused = await client.get("/health")
            assert refused.status_code == 403 and "evil.example" in refused.json()["detail"]
        async with _client(app) as client:
            cross = await client.post(
                "/deployments/add/web/run",
                json={"parameters": {"x": 1}},
                headers={"Origin": "https://evil.example"},
            )
            assert cross.status_code == 403
            assert (await client.get("/health", headers={"Origin": "null"})).status_code == 403
            same = await client.get("/health", headers={"Origin": "http://127.0.0.1:8080"})
            assert same.status_code == 200
        async with _client(app, host="localhost:9") as client:
            assert (await client.get("/health")).status_code == 200
        listed = http_api(await add.ato_deployment("web"), allowed_hosts=["api.internal"])
        async with _client(listed, host="api.internal") as client:
            assert (await client.get("/health")).status_code == 200

    asyncio.run(main())


def test_only_json_bodies_are_accepted():
    async def main() -> None:
        async with _client(http_api(await add.ato_deployment("web"))) as client:
            form = await client.post("/deployments/add/web/run", data={"parameters": "x"})
            assert form.status_code == 415
            text = await client.post(
                "/deployments/add/web/run",
                content=b'{"parameters": {}}',
                headers={"Content-Type": "text/plain"},
            )
            assert text.status_code == 415 and "text/plain" in text.json()["detail"]
            bad = await client.post(
                "/deployments/add/web/run",
                content=b"{not json",
                headers={"Content-Type": "application/json; charset=utf-8"},
            )
            assert bad.status_code == 400

    asyncio.run(main())


class _Recorder:
    """An ASGI app that records how many body bytes it was handed."""

    def __init__(self) -> None:
        self.read = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            self.read += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def test_a_body_over_the_cap_gets_413_before_it_is_read():
    async def main() -> None:
        with temporary_settings({"serve.webserver_max_body_bytes": 1000}):
            app = http_api(await add.ato_deployment("web"))
        async with _client(app) as client:
            big = {"parameters": {"x": 1, "pad": "a" * 5000}}
            refused = await client.post("/deployments/add/web/run", json=big)
            assert refused.status_code == 413 and "1000" in refused.json()["detail"]

        # A declared length over the cap is refused without a byte read; a chunked body is cut
        # off as soon as it passes the cap.
        inner = _Recorder()
        guard = RequestGuard(inner, max_body_bytes=1000, json_only=True)
        async with _client(guard) as client:
            sized = await client.post("/x", content=b"a" * 5000, headers=_JSON)
            assert sized.status_code == 413 and inner.read == 0

            async def chunks() -> Any:
                for _ in range(10):
                    yield b"a" * 600

            chunked = await client.post("/x", content=chunks(), headers=_JSON)
            assert chunked.status_code == 413 and inner.read <= 1200
            small = await client.post("/x", content=b"a" * 10, headers=_JSON)
            assert small.status_code == 200

    asyncio.run(main())


_JSON = {"Content-Type": "application/json"}


def test_too_many_triggers_at_once_get_429():
    async def main() -> None:
        gate, both_in = asyncio.Event(), asyncio.Event()
        arrived = 0
        from millstream._engine.serve.webserver import build_app

        dep = await add.ato_deployment("web")

        async def trigger(name: str, parameters: dict[str, Any]) -> uuid.UUID:
            nonlocal arrived
            arrived += 1
            if arrived == 2:
                both_in.set()
            await gate.wait()
            return uuid.uuid4()

        async def read(run_id: uuid.UUID) -> Any:
            raise AssertionError("not read")

        app = build_app([dep], trigger=trigger, read_flow_run=read, token=None, max_inflight=2)
        async with _client(app) as client:
            url = "/deployments/add/web/run"
            held = [asyncio.ensure_future(client.post(url, json={})) for _ in range(2)]
            await asyncio.wait_for(both_in.wait(), 30)  # both are held inside the trigger
            over = await client.post(url, json={})
            assert over.status_code == 429 and over.headers["retry-after"] == "1"
            gate.set()
            assert [r.status_code for r in await asyncio.gather(*held)] == [201, 201]
            assert (await client.post(url, json={})).status_code == 201

    asyncio.run(main())


def test_mounted_into_an_application_of_ones_own():
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    async def home(request: Any) -> PlainTextResponse:
        return PlainTextResponse("mine")

    app = Starlette(
        routes=[Route("/", home), Mount("/millstream", app=http_api(add.to_deployment("m")))]
    )

    async def main() -> None:
        async with _client(app) as client:
            assert (await client.get("/")).text == "mine"
            assert (await client.get("/millstream/health")).json() == {"status": "ok"}
            made = await client.post(
                "/millstream/deployments/add/m/run", json={"parameters": {"x": 1}}
            )
            assert made.status_code == 201

    asyncio.run(main())


SERVE = textwrap.dedent(
    """
    from millstream import flow

    @flow
    def hello() -> str:
        return "hi"

    hello.serve("web", webserver=True, print_starting_message=False)
    """
)


@pytest.mark.slow
def test_a_public_bind_without_a_token_is_refused_at_start_with_one_line(tmp_path):
    script = tmp_path / "serve_it.py"
    script.write_text(SERVE)
    env = dict(os.environ, MILLSTREAM_SERVE_WEBSERVER_HOST="0.0.0.0")
    env.pop("MILLSTREAM_SERVE_TOKEN", None)
    proc = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "Refusing to serve the HTTP API on '0.0.0.0' without a token" in proc.stderr


@pytest.mark.slow
def test_a_real_uvicorn_server_serves_the_api(tmp_path):
    port = free_port()
    script = tmp_path / "serve_it.py"
    script.write_text(SERVE)
    env = dict(os.environ, MILLSTREAM_SERVE_WEBSERVER_PORT=str(port))
    env.pop("MILLSTREAM_SERVE_TOKEN", None)
    proc = subprocess.Popen([sys.executable, str(script)], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        assert wait_until_up(base, proc, deadline)
        made = httpx.post(f"{base}/deployments/hello/web/run", json={})
        url = base + made.json()["url"]
        while httpx.get(url).json()["state"]["type"] != "COMPLETED":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        rebinding = httpx.get(f"{base}/health", headers={"Host": "attacker.example"})
        assert rebinding.status_code == 403
        assert json.loads(httpx.get(f"{base}/openapi.json").text)["openapi"].startswith("3.")
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.slow
def test_the_cli_refuses_a_public_bind_without_a_token_in_one_line(tmp_path):
    (tmp_path / "f.py").write_text(
        "from millstream import flow\n\n@flow\ndef hello() -> str:\n    return 'hi'\n"
    )
    env = dict(os.environ, MILLSTREAM_SERVE_WEBSERVER_HOST="0.0.0.0")
    env.pop("MILLSTREAM_SERVE_TOKEN", None)
    proc = subprocess.run(
        [sys.executable, "-m", "millstream", "serve", "f.py:hello", "--webserver"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("Error: Refusing to serve the HTTP API on '0.0.0.0' without a token")
