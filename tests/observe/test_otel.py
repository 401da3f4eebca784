"""OpenTelemetry spans of runs (the otel extra), checked with the SDK's in-memory exporter: the
tree of a flow with a subflow, a retried task and a mapped task; attributes; context in
threads; trace ids on log lines; and nothing at all when no SDK provider is set."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from millstream import flow, get_run_logger, task
from millstream.testing import FastClock, millstream_test_harness

ATTEMPTS: dict[str, int] = {}
_exporter = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(_exporter))


@pytest.fixture(autouse=True)
def provider(monkeypatch):
    # The global provider can be set once per process: the test's provider is swapped in for
    # the test through the API's own global, and the old one put back.
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", _provider)
    _exporter.clear()
    ATTEMPTS.clear()
    yield _provider


@task(retries=2, retry_delay_seconds=5)
def flaky(key: str) -> str:
    ATTEMPTS[key] = ATTEMPTS.get(key, 0) + 1
    get_run_logger().info("attempt %d", ATTEMPTS[key])
    if ATTEMPTS[key] < 2:
        raise ValueError("once")
    return key


@task
def square(x: int) -> int:
    return x * x


@flow
def child(n: int) -> int:
    return sum(square.map(range(n)).result())


@flow
def parent() -> int:
    flaky("p")
    return child(3)


def test_the_span_tree_of_a_flow_with_a_subflow_a_retried_task_and_a_mapped_task():
    with millstream_test_harness(clock=FastClock()):
        assert parent() == 5
    spans = _exporter.get_finished_spans()
    named = {s.attributes["millstream.run.name"]: s for s in spans}
    roots = [s for s in spans if s.parent is None]
    assert [r.attributes["millstream.flow.name"] for r in roots] == ["parent"]
    root = roots[0]
    assert len({s.context.trace_id for s in spans}) == 1
    children = [s for s in spans if s.parent and s.parent.span_id == root.context.span_id]
    kinds = sorted(
        (s.attributes["millstream.run.kind"], s.attributes.get("millstream.task.name", ""))
        for s in children
    )
    assert kinds == [("flow", ""), ("task", "flaky")]
    sub = next(s for s in children if s.attributes["millstream.run.kind"] == "flow")
    mapped = [s for s in spans if s.parent and s.parent.span_id == sub.context.span_id]
    assert sorted(s.attributes["millstream.task.name"] for s in mapped) == ["square"] * 3
    retried = next(s for s in children if s.attributes["millstream.run.kind"] == "task")
    assert retried.attributes["millstream.run.run_count"] == 2
    assert retried.attributes["millstream.run.retries"] == 2
    assert [e.name for e in retried.events] == ["retry"]
    for s in spans:
        assert s.attributes["millstream.state.type"] == "COMPLETED"
        assert s.attributes["millstream.run.id"]
    assert named[root.attributes["millstream.run.name"]].name.startswith("flow ")
    # The task span started while its flow's span was current, on a worker thread or not.
    assert retried.attributes["millstream.flow_run.id"] == root.attributes["millstream.run.id"]


@task
def boom() -> None:
    raise RuntimeError("no")


@flow
def fails() -> None:
    boom()


def test_a_failed_run_has_an_error_status():
    from opentelemetry.trace import StatusCode

    with millstream_test_harness():
        fails(return_state=True)
    spans = _exporter.get_finished_spans()
    assert {s.status.status_code for s in spans} == {StatusCode.ERROR}
    assert {s.attributes["millstream.state.type"] for s in spans} == {"FAILED"}


@flow
def threaded() -> list[str]:
    # Submitted sync tasks run on worker threads: their spans still have the flow as parent.
    return [f.result() for f in [flaky.submit("t1"), flaky.submit("t2")]]


def test_context_follows_runs_into_worker_threads():
    with millstream_test_harness(clock=FastClock()):
        threaded()
    spans = _exporter.get_finished_spans()
    [root] = [s for s in spans if s.parent is None]
    tasks = [s for s in spans if s.attributes["millstream.run.kind"] == "task"]
    assert len(tasks) == 2
    assert all(s.parent.span_id == root.context.span_id for s in tasks)


def test_log_lines_of_a_traced_run_carry_the_trace_and_span_ids(caplog):
    caplog.set_level("INFO")
    with millstream_test_harness(clock=FastClock()):
        parent()
    spans = {s.context.span_id: s for s in _exporter.get_finished_spans()}
    [line] = [r for r in caplog.records if r.getMessage() == "attempt 1"]
    span = spans[int(line.span_id, 16)]
    assert span.attributes["millstream.task.name"] == "flaky"
    assert int(line.trace_id, 16) == span.context.trace_id


def test_without_an_sdk_provider_nothing_is_imported_or_made(tmp_path):
    script = textwrap.dedent(
        """
        import sys
        from millstream import flow, task
        from millstream.testing import millstream_test_harness

        @task
        def t() -> int:
            return 1

        @flow
        def f() -> int:
            return t()

        with millstream_test_harness():
            f()
        print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"


@flow
def served_flow() -> int:
    return 1


def test_a_run_triggered_over_http_with_a_traceparent_is_a_child_of_the_callers_span():
    import asyncio
    import time

    import httpx

    from millstream import aserve
    from millstream.deployments import http_api

    caller = _provider.get_tracer("caller")

    async def main() -> None:
        dep = await served_flow.ato_deployment("traced")
        worker = asyncio.ensure_future(aserve(dep, print_starting_message=False))
        transport = httpx.ASGITransport(app=http_api(dep))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
                with caller.start_as_current_span("client request") as span:
                    headers: dict[str, str] = {}
                    from opentelemetry.propagate import inject

                    inject(headers)
                    made = await c.post(
                        "/deployments/served-flow/traced/run", json={}, headers=headers
                    )
                    assert made.status_code == 201, made.text
                    parent_id = span.get_span_context().span_id
                deadline = time.monotonic() + 30
                while not any(
                    s.attributes.get("millstream.flow.name") == "served-flow"
                    for s in _exporter.get_finished_spans()
                ):
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.02)
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        [run_span] = [
            s
            for s in _exporter.get_finished_spans()
            if s.attributes.get("millstream.flow.name") == "served-flow"
        ]
        assert run_span.parent is not None and run_span.parent.span_id == parent_id

    with millstream_test_harness():
        asyncio.run(main())
