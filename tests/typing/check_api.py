"""Checked by mypy (tests/unit/test_static.py): Flow[P, R] and Task[P, R] keep signatures."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, assert_type

from millstream import Flow, Task, flow, task
from millstream.futures import PrefectFuture, PrefectFutureList


@task
def add(x: int, y: int = 1) -> int:
    return x + y


@task(retries=2)
async def fetch(url: str) -> bytes:
    return url.encode()


@flow
def pipeline(n: int) -> list[int]:
    return [add(i) for i in range(n)]


@flow(name="async-pipeline")
async def apipeline(url: str) -> bytes:
    return await fetch(url)


# The decorated objects are Task/Flow generics over the function's parameters and return type.
task_object: Task[..., int] = add
async_task_object: Task[..., Coroutine[Any, Any, bytes]] = fetch
flow_object: Flow[..., list[int]] = pipeline
async_flow_object: Flow[..., Coroutine[Any, Any, bytes]] = apipeline

assert_type(add(1), int)
assert_type(add(1, y=2), int)
assert_type(pipeline(3), list[int])


async def in_async_code() -> None:
    assert_type(await apipeline("u"), bytes)
    assert_type(await fetch("u"), bytes)


def futures_inside_a_flow() -> None:
    assert_type(add.submit(1), PrefectFuture[int])
    assert_type(fetch.submit("u"), PrefectFuture[bytes])
    assert_type(add.submit(1).result(), int)
    assert_type(add.map([1, 2]), PrefectFutureList[Any])


def wrong_calls_are_rejected() -> None:
    add("x")  # type: ignore[arg-type]
    pipeline()  # type: ignore[call-arg]


# Options are typed once (TaskOptions / FlowOptions): the decorator with options, the
# decorator called with the function, the constructors and with_options keep Task[P, R].
def plain(x: int, /) -> str:
    return str(x)


assert_type(task(retries=2)(plain), Task[[int], str])
assert_type(task(plain, retries=2, tags={"a"}), Task[[int], str])
assert_type(flow(name="x")(plain), Flow[[int], str])
assert_type(flow(plain, name="x", retries=1), Flow[[int], str])
assert_type(Task(plain, retries=2), Task[[int], str])
assert_type(Flow(plain, name="x"), Flow[[int], str])
assert_type(task(plain).with_options(retries=3, timeout_seconds=1.5), Task[[int], str])
assert_type(flow(plain).with_options(name="y", log_prints=True), Flow[[int], str])


def unknown_or_mistyped_options_are_rejected() -> None:
    task(plain).with_options(retriez=3)  # type: ignore[call-arg]
    flow(plain).with_options(nmae="y")  # type: ignore[call-arg]
    Task(plain, bogus=1)  # type: ignore[call-arg]
    task(retriez=2)  # type: ignore[call-overload]
    flow(nmae="x")  # type: ignore[call-overload]
    task(retries="2")  # type: ignore[call-overload]
    flow(plain).with_options(timeout_seconds="5")  # type: ignore[arg-type]
