"""Flows inside async applications: a Starlette app and a plain asyncio TCP server."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from millstream import flow, task
from millstream._engine.store import get_store
from millstream.states import StateType


@task
async def lookup(key: str) -> str:
    await asyncio.sleep(0)
    return key.upper()


@task
def checksum(values: list[str]) -> int:
    return sum(len(v) for v in values)


@flow
async def handle(keys: list[str]) -> dict:
    values = await lookup.map(keys)
    loop_id = id(asyncio.get_running_loop())
    return {"values": values, "checksum": checksum(values), "loop": loop_id}


@flow
def sync_report(n: int) -> int:
    return n * 2


async def endpoint(request: Request) -> JSONResponse:
    keys = request.query_params["keys"].split(",")
    result = await handle(keys)
    result["same_loop"] = result.pop("loop") == id(asyncio.get_running_loop())
    result["sync"] = sync_report(len(keys))
    return JSONResponse(result)


def test_starlette_handler_awaits_flows_on_its_own_loop(db_path):
    app = Starlette(routes=[Route("/run", endpoint)])

    async def main() -> list[dict]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            responses = await asyncio.gather(
                *(client.get("/run", params={"keys": f"a{i},b{i}"}) for i in range(5))
            )
        return [r.json() for r in responses]

    bodies = asyncio.run(main())
    assert [b["values"] for b in bodies] == [[f"A{i}", f"B{i}"] for i in range(5)]
    assert all(b["same_loop"] and b["sync"] == 4 and b["checksum"] == 4 for b in bodies)
    rows = asyncio.run(
        get_store(db_path).fetchall_sql(
            "SELECT state_type, count(*) FROM flow_run GROUP BY state_type"
        )
    )
    assert {r[0]: r[1] for r in rows} == {"COMPLETED": 10}


def test_plain_asyncio_server_runs_flows_per_connection(db_path):
    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = (await reader.readline()).decode().strip()
        state = await handle(line.split(","), return_state=True)
        writer.write(f"{state.type.value} {await state.result()}\n".encode())
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main() -> list[str]:
        server = await asyncio.start_server(on_client, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]

        async def ask(payload: str) -> str:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(payload.encode() + b"\n")
            await writer.drain()
            answer = (await reader.readline()).decode().strip()
            writer.close()
            await writer.wait_closed()
            return answer

        async with server:
            return await asyncio.gather(*(ask(f"x{i},y") for i in range(4)))

    answers = asyncio.run(main())
    assert all(a.startswith(StateType.COMPLETED.value) for a in answers)
    assert "'X0', 'Y'" in answers[0]


def test_flows_in_two_event_loops_on_two_threads_at_once(db_path):
    results: dict[int, list[str]] = {}
    errors: list[BaseException] = []

    def run_loop(i: int) -> None:
        try:
            results[i] = asyncio.run(handle([f"k{i}", "z"]))["values"]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run_loop, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results == {i: [f"K{i}", "Z"] for i in range(3)}


@pytest.mark.parametrize("count", [1, 50])
def test_cancelling_the_awaiting_task_crashes_the_flow_run(db_path, count):
    started: list[asyncio.Event] = []

    @task
    async def forever(i: int) -> None:
        started[0].set()
        await asyncio.sleep(3600)

    @flow
    async def long_running(n: int) -> None:
        await forever.map(range(n))

    async def main() -> None:
        started.append(asyncio.Event())
        run = asyncio.ensure_future(long_running(count))
        # Cancel once the flow run is under way (a task of it runs), not after a guessed delay.
        await asyncio.wait_for(started[0].wait(), 30)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run

    asyncio.run(main())
    rows = asyncio.run(get_store(db_path).fetchall_sql("SELECT state_type FROM flow_run"))
    assert [r[0] for r in rows] == ["CRASHED"]
