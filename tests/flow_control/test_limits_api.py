"""Concurrency and rate limits inside one process: Prefect's rules, the client, the CLI."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from millstream import flow, get_client, task
from millstream.cli import main as cli_main
from millstream.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
)
from millstream.concurrency import asyncio as aconcurrency
from millstream.concurrency.sync import (
    AcquireConcurrencySlotTimeoutError,
    ConcurrencySlotAcquisitionError,
    concurrency,
    rate_limit,
)
from millstream.exceptions import ObjectAlreadyExists, ObjectNotFound


def _active(name: str) -> int:
    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(name).active_slots


def test_slots_are_held_inside_the_block_and_given_back(make_limit: Callable[..., None]) -> None:
    make_limit("db", 3)
    with concurrency("db", occupy=2):
        assert _active("db") == 2
        with pytest.raises(AcquireConcurrencySlotTimeoutError):
            with concurrency("db", occupy=2, timeout_seconds=0.05):
                pass
    assert _active("db") == 0
    with pytest.raises(RuntimeError, match="boom"):
        with concurrency(["db"]):
            raise RuntimeError("boom")
    assert _active("db") == 0


def test_missing_limits_are_skipped_with_a_warning_or_refused_when_strict(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran = []
    with concurrency("nope"):
        ran.append(1)
    assert ran == [1]
    assert "Concurrency limits ['nope'] do not exist - skipping acquisition." in caplog.text
    with pytest.raises(ConcurrencySlotAcquisitionError, match="must be created"):
        with concurrency("nope", strict=True):
            ran.append(2)
    assert ran == [1]


def test_requests_that_can_never_fit_fail_at_once(make_limit: Callable[..., None]) -> None:
    make_limit("small", 1)
    with pytest.raises(ConcurrencySlotAcquisitionError, match="greater than the limit"):
        with concurrency("small", occupy=2):
            pass
    with pytest.raises(ConcurrencySlotAcquisitionError, match="slot decay"):
        rate_limit("small")
    with pytest.raises(ValueError, match="occupy"):
        with concurrency("small", occupy=0):
            pass


def test_an_inactive_limit_does_not_hold_anyone_back(make_limit: Callable[..., None]) -> None:
    make_limit("off", 1, active=False)
    with concurrency("off"), concurrency("off", timeout_seconds=0):
        pass


def test_all_or_none_across_several_limits(make_limit: Callable[..., None]) -> None:
    make_limit("a", 1)
    make_limit("b", 1)
    with concurrency("b"):
        with pytest.raises(AcquireConcurrencySlotTimeoutError):
            with concurrency(["a", "b"], timeout_seconds=0.05):
                pass
        # Nothing of "a" was kept by the failed attempt.
        assert _active("a") == 0
    with concurrency(["a", "b"]):
        assert (_active("a"), _active("b")) == (1, 1)


def test_max_retries_gives_up_with_an_acquisition_error(make_limit: Callable[..., None]) -> None:
    make_limit("one", 1)
    with concurrency("one"):
        with pytest.raises(ConcurrencySlotAcquisitionError, match="max_retries"):
            with concurrency("one", max_retries=0):
                pass


def test_a_release_wakes_a_waiting_thread_at_once(
    make_limit: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Polling would take a minute: only the in-process wake-up can make this quick.
    monkeypatch.setenv("MILLSTREAM_LIMITS_POLL_SECONDS", "60")
    make_limit("one", 1)
    got = threading.Event()
    released_at: list[float] = []

    def waiter() -> None:
        with concurrency("one"):
            got.set()

    with concurrency("one"):
        thread = threading.Thread(target=waiter)
        thread.start()
        assert not got.wait(0.1)
        released_at.append(time.monotonic())
    assert got.wait(5)
    assert time.monotonic() - released_at[0] < 1.0
    thread.join(5)


def test_async_waiters_are_woken_on_their_loop(
    make_limit: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MILLSTREAM_LIMITS_POLL_SECONDS", "60")
    make_limit("pair", 2)
    peak = [0, 0]

    async def holder() -> None:
        async with aconcurrency.concurrency("pair"):
            peak[0] += 1
            peak[1] = max(peak)
            await asyncio.sleep(0.01)
            peak[0] -= 1

    async def main() -> None:
        await asyncio.wait_for(asyncio.gather(*(holder() for _ in range(10))), 10)

    asyncio.run(main())
    assert peak[1] == 2
    assert _active("pair") == 0


def test_async_rate_limit_on_a_decaying_limit(make_limit: Callable[..., None]) -> None:
    make_limit("rl", 1, slot_decay_per_second=20.0)

    async def main() -> float:
        start = time.monotonic()
        for _ in range(3):
            await aconcurrency.rate_limit("rl")
        return time.monotonic() - start

    # The first is free; the next two wait for one slot each to decay (1/20 s).
    assert asyncio.run(main()) >= 0.09


def test_client_crud_matches_prefect(make_limit: Callable[..., None]) -> None:
    with get_client(sync_client=True) as client:
        limit_id = client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name="api", limit=4, slot_decay_per_second=0.5)
        )
        with pytest.raises(ObjectAlreadyExists):
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name="api", limit=1)
            )
        read = client.read_global_concurrency_limit_by_name("api")
        assert (read.id, read.limit, read.active, read.slot_decay_per_second) == (
            limit_id,
            4,
            True,
            0.5,
        )
        client.update_global_concurrency_limit(
            "api", GlobalConcurrencyLimitUpdate(limit=6, active=False)
        )
        read = client.read_global_concurrency_limit_by_name("api")
        assert (read.limit, read.active) == (6, False)
        client.upsert_global_concurrency_limit_by_name("api", 7)
        client.upsert_global_concurrency_limit_by_name("new", 2, slot_decay_per_second=1.0)
        assert [g.name for g in client.read_global_concurrency_limits()] == ["api", "new"]
        assert client.read_global_concurrency_limit_by_name("api").limit == 7
        client.delete_global_concurrency_limit_by_name("api")
        with pytest.raises(ObjectNotFound):
            client.read_global_concurrency_limit_by_name("api")
        with pytest.raises(ObjectNotFound):
            client.delete_global_concurrency_limit_by_name("api")
        with pytest.raises(ObjectNotFound):
            client.update_global_concurrency_limit("api", GlobalConcurrencyLimitUpdate(limit=1))
    with pytest.raises(ValueError, match="limit"):
        GlobalConcurrencyLimitCreate(name="bad", limit=-1)


def test_tag_limits_hold_task_runs_in_pending(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MILLSTREAM_LIMITS_POLL_SECONDS", "60")
    lock = threading.Lock()
    running = [0, 0]

    @task(tags=["db"])
    def query(i: int) -> int:
        with lock:
            running[0] += 1
            running[1] = max(running)
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return i

    @task
    def free(i: int) -> int:
        return i

    @flow
    def report() -> list[int]:
        return [f.result() for f in query.map(range(8))] + [free(9)]

    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag="db", concurrency_limit=2)
        assert report() == [0, 1, 2, 3, 4, 5, 6, 7, 9]
        assert running[1] == 2
        limit = client.read_concurrency_limit_by_tag("db")
        assert (limit.tag, limit.concurrency_limit, limit.active_slots) == ("db", 2, [])
        assert [t.tag for t in client.read_concurrency_limits(limit=10, offset=0)] == ["db"]
        client.delete_concurrency_limit_by_tag("db")
        with pytest.raises(ObjectNotFound):
            client.read_concurrency_limit_by_tag("db")


def test_a_tagged_task_run_lists_as_a_holder_while_it_runs() -> None:
    seen: list[list[object]] = []

    @task(tags=["gpu"])
    def work() -> None:
        with get_client(sync_client=True) as client:
            seen.append(client.read_concurrency_limit_by_tag("gpu").active_slots)

    @flow
    def job() -> None:
        work()

    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag="gpu", concurrency_limit=1)
    job()
    assert len(seen) == 1 and len(seen[0]) == 1


def test_cli_gcl_and_concurrency_limit(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert cli_main(["gcl", "create", "db", "--limit", "3", "--slot-decay-per-second", "0.5"]) == 0
    assert cli_main(["gcl", "update", "db", "--limit", "5", "--disable"]) == 0
    capsys.readouterr()
    assert cli_main(["gcl", "inspect", "db", "--json"]) == 0
    fields = json.loads(capsys.readouterr().out)
    assert (fields["limit"], fields["active"], fields["slot_decay_per_second"]) == (5, False, 0.5)
    assert cli_main(["gcl", "ls"]) == 0
    assert "db" in capsys.readouterr().out
    assert cli_main(["gcl", "update", "db"]) == 2
    assert cli_main(["concurrency-limit", "create", "io", "2"]) == 0
    capsys.readouterr()
    assert cli_main(["concurrency-limit", "ls", "--json"]) == 0
    [tag] = json.loads(capsys.readouterr().out)
    assert (tag["tag"], tag["concurrency_limit"]) == ("io", 2)
    assert cli_main(["concurrency-limit", "reset", "io"]) == 0
    assert cli_main(["concurrency-limit", "delete", "io"]) == 0
    assert cli_main(["gcl", "delete", "db"]) == 0
    assert cli_main(["gcl", "delete", "db"]) == 1
    assert cli_main(["gcl", "create", "x", "--limit", "-1"]) == 2


def test_a_tag_limit_of_zero_fails_its_task_runs_instead_of_waiting_forever() -> None:
    @task(tags=["frozen"])
    def blocked() -> int:
        return 1

    states: list[object] = []

    @flow
    def uses_it() -> None:
        states.append(blocked(return_state=True))

    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag="frozen", concurrency_limit=0)
    uses_it()
    [state] = states
    assert state.is_failed()
    assert "greater than the limit" in state.message


def test_cli_task_worker_refuses_bad_targets(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "not_tasks.py"
    script.write_text("value = 3\n")
    assert cli_main(["task-worker", f"{script}:value"]) == 2
    assert "is not a task" in capsys.readouterr().err
    assert cli_main(["task-worker", "no-colon"]) == 2
    assert cli_main(["task-worker", f"{script}:value", "--limit", "0"]) == 2
