"""Transactions behave as Prefect 3.9.1's (each behaviour checked against prefect==3.9.1)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from millstream import flow, task
from millstream.exceptions import ConfigurationError
from millstream.locking.memory import MemoryLockManager
from millstream.results import ResultRecord, ResultStore
from millstream.transactions import (
    AsyncTransaction,
    CommitMode,
    IsolationLevel,
    Transaction,
    TransactionState,
    atransaction,
    get_transaction,
    transaction,
)


def test_a_fresh_transaction_is_pending_with_no_mode_and_equal_to_another():
    txn = Transaction()
    assert txn.state == TransactionState.PENDING and txn.is_pending()
    assert txn.store is None and txn.commit_mode is None
    assert txn.isolation_level == IsolationLevel.READ_COMMITTED
    assert Transaction() == Transaction()
    assert Transaction() != Transaction(key="other")
    assert [s.value for s in TransactionState] == [
        "PENDING",
        "ACTIVE",
        "STAGED",
        "COMMITTED",
        "ROLLED_BACK",
    ]


@pytest.mark.parametrize("state", list(TransactionState))
def test_state_predicates_follow_the_state(state):
    txn = Transaction(state=state)
    assert txn.is_pending() == (state.name == "PENDING")
    assert txn.is_active() == (state.name == "ACTIVE")
    assert txn.is_staged() == (state.name == "STAGED")
    assert txn.is_committed() == (state.name == "COMMITTED")
    assert txn.is_rolled_back() == (state.name == "ROLLED_BACK")


def test_lifecycle_active_staged_committed_and_context_reset():
    assert get_transaction() is None
    with transaction() as txn:
        assert get_transaction() is txn
        assert txn.is_active() and txn.commit_mode == CommitMode.LAZY
        txn.stage(5)
        assert txn.is_staged()
    assert txn.is_committed() and get_transaction() is None
    with pytest.raises(ValueError, match="foo"):
        with Transaction() as failing:
            raise ValueError("foo")
    assert failing.is_rolled_back() and get_transaction() is None


def test_nested_lazy_commits_with_the_parent_eager_on_exit_off_rolls_back():
    with Transaction(key="outer") as outer:
        with Transaction(key="inner") as inner:
            pass
        assert not inner.is_committed() and outer.children == [inner]
        assert inner.get_parent() is outer  # no longer entered: the active one is asked
        with Transaction(key="eager", commit_mode=CommitMode.EAGER) as eager:
            assert eager.get_parent() is outer
        assert eager.is_committed()
    assert outer.is_committed() and inner.is_committed()
    with Transaction(commit_mode=CommitMode.OFF) as off:
        pass
    assert off.is_rolled_back()
    with Transaction(commit_mode=CommitMode.OFF) as off:
        off.commit()
    assert off.is_committed()


def test_a_rolled_back_child_rolls_every_parent_back():
    with Transaction(key="outer") as outer:
        with Transaction(key="inner") as inner:
            with Transaction(key="nested") as nested:
                nested.rollback()
            assert inner.is_rolled_back()
    assert outer.is_rolled_back()


def test_commit_failure_rolls_back_and_a_failed_rollback_returns_false():
    class BadCommit(Transaction):
        def commit(self, **kwargs):
            raise ValueError("foo")

    class BadRollback(Transaction):
        def rollback(self, **kwargs):
            raise ValueError("foo")

    with Transaction() as txn:
        txn.add_child(BadCommit())
    assert txn.is_rolled_back()
    with Transaction() as txn:
        txn.add_child(BadRollback())
        assert txn.rollback() is False
    assert get_transaction() is None


def test_hooks_order_commit_in_order_rollback_in_reverse():
    log: list[str] = []
    with transaction() as txn:
        txn.stage(
            1,
            on_commit_hooks=[lambda t: log.append("c1"), lambda t: log.append("c2")],
            on_rollback_hooks=[lambda t: log.append("r1"), lambda t: log.append("r2")],
        )
    assert log == ["c1", "c2"]
    log.clear()
    with pytest.raises(RuntimeError):
        with transaction() as txn:
            txn.stage(
                1,
                on_rollback_hooks=[lambda t: log.append("r1"), lambda t: log.append("r2")],
            )
            raise RuntimeError
    assert log == ["r2", "r1"]


def test_get_parent_inside_a_rollback_hook_after_success():
    seen: list = []
    with pytest.raises(ValueError):
        with Transaction() as outer:
            with Transaction(key="ok") as ok:
                ok.stage("foo", on_rollback_hooks=[lambda t: seen.append(t.get_parent())])
            with Transaction(key="bad"):
                raise ValueError("x")
    assert seen == [outer]


def test_values_are_copies_children_see_parents_and_never_change_them():
    with transaction(key="top") as top:
        top.set("key", {"x": [42]})
        with transaction(key="nested") as inner:
            value = inner.get("key")
            value["x"].append(43)
            assert inner.get("key") == {"x": [42]}
            inner.set("key", value)
            assert inner.get("key") == {"x": [42, 43]}
        assert top.get("key") == {"x": [42]}
        with pytest.raises(ValueError, match="unknown key: nope"):
            top.get("nope")
        assert top.get("nope", None) is None


def test_a_keyed_transaction_writes_its_staged_value_and_a_later_one_starts_committed(tmp_path):
    store = ResultStore(result_storage=tmp_path)
    with transaction(key="idem", store=store) as txn:
        assert not txn.is_committed()
        txn.stage({"foo": "bar"})
    record = txn.read()
    assert isinstance(record, ResultRecord) and record.result == {"foo": "bar"}
    assert store.read("idem").metadata.storage_key == "idem"
    with transaction(key="idem", store=store) as again:
        assert again.is_committed()
        assert again.read().result == {"foo": "bar"}
    with transaction(key="idem", store=store, overwrite=True) as fresh:
        assert not fresh.is_committed()


def test_default_store_of_a_keyed_transaction_is_a_result_store():
    with transaction(key="default-store") as txn:
        assert isinstance(txn.store, ResultStore)
        txn.stage([1, 2])
    assert txn.read().result == [1, 2]
    with transaction() as unkeyed:
        assert unkeyed.store is None and unkeyed.read() is None


def test_write_on_commit_false_writes_nothing(tmp_path):
    store = ResultStore(result_storage=tmp_path)
    with transaction(key="nowrite", store=store, write_on_commit=False) as txn:
        txn.stage(1)
    assert txn.is_committed() and not store.exists("nowrite")


def test_isolation_level_inherits_and_serializable_needs_a_lock_manager(tmp_path):
    with transaction(key="t") as txn:
        assert txn.isolation_level == IsolationLevel.READ_COMMITTED
    locked = ResultStore(result_storage=tmp_path, lock_manager=MemoryLockManager())
    with transaction(key="a", store=locked, isolation_level=IsolationLevel.SERIALIZABLE) as top:
        with transaction(key="b", store=locked) as inner:
            assert inner.isolation_level == top.isolation_level == IsolationLevel.SERIALIZABLE
    with pytest.raises(ConfigurationError, match="Isolation level SERIALIZABLE is not supported"):
        with transaction(key="c", store=ResultStore(), isolation_level="SERIALIZABLE"):
            pass


def test_serializable_writers_queue_and_the_first_one_wins(tmp_path):
    store = ResultStore(result_storage=tmp_path, lock_manager=MemoryLockManager())
    opened = threading.Event()
    release = threading.Event()

    def first() -> None:
        with transaction(
            key="race", store=store, isolation_level=IsolationLevel.SERIALIZABLE
        ) as txn:
            opened.set()
            release.wait(10)
            txn.stage({"foo": "bar"})

    thread = threading.Thread(target=first)
    thread.start()
    assert opened.wait(10)
    assert store.is_locked("race")
    release.set()
    with transaction(key="race", store=store, isolation_level=IsolationLevel.SERIALIZABLE) as txn:
        # The lock was waited for; the first writer committed, so this one starts committed.
        assert txn.is_committed()
        txn.stage({"fizz": "buzz"})
    thread.join(10)
    assert store.read("race").result == {"foo": "bar"}
    assert not store.is_locked("race")


def test_async_transactions_await_hooks_and_refuse_plain_with(tmp_path):
    log: list[str] = []

    async def on_commit(txn) -> None:
        log.append("async")

    store = ResultStore(result_storage=tmp_path)

    async def main() -> AsyncTransaction:
        async with atransaction(key="async-key", store=store) as txn:
            assert isinstance(txn, AsyncTransaction) and get_transaction() is txn
            txn.stage(3, on_commit_hooks=[on_commit, lambda t: log.append("sync")])
        assert (await txn.read()).result == 3
        return txn

    txn = asyncio.run(main())
    assert txn.is_committed() and log == ["async", "sync"]
    with pytest.raises(NotImplementedError, match="async with"):
        with AsyncTransaction():
            pass


def test_a_task_body_sees_its_own_transaction_whose_values_stay_its_own():
    seen: dict = {}

    @task
    def setter() -> int:
        txn = get_transaction()
        seen["txn"] = txn
        seen["state"] = txn.state
        seen["parent_y"] = txn.get("y", None)
        txn.set("x", 2)
        return 1

    @flow
    def f() -> None:
        with transaction(key="outer") as txn:
            txn.set("x", 1)
            txn.set("y", 5)
            setter()
            seen["parent_x"] = txn.get("x")
            seen["children"] = list(txn.children)

    f()
    assert seen["state"] == TransactionState.ACTIVE
    assert seen["parent_y"] == 5 and seen["parent_x"] == 1
    assert seen["children"] == [seen["txn"]]
    assert seen["txn"].is_committed()


def test_task_hooks_commit_with_the_block_and_roll_back_with_it():
    log: list = []

    @task
    def step() -> int:
        return 1

    @step.on_commit
    def committed(txn) -> None:
        log.append(("commit", txn.state))

    @step.on_rollback
    def rolled_back(txn) -> None:
        log.append(("rollback", txn.state))

    @flow
    def ok() -> None:
        with transaction():
            step()
            assert log == []

    ok()
    # As in Prefect, hooks run before the state changes: a commit hook sees STAGED.
    assert log == [("commit", TransactionState.STAGED)]
    log.clear()

    @flow
    def bad() -> None:
        with transaction():
            step()
            raise ValueError("x")

    with pytest.raises(ValueError):
        bad()
    assert log == [("rollback", TransactionState.STAGED)]


def test_a_task_returning_a_failed_state_rolls_its_own_hooks_back():
    from millstream.states import Failed

    log: list[str] = []

    @task
    def returns_failed():
        return Failed(message="nope")

    @returns_failed.on_rollback
    def undo(txn) -> None:
        log.append("undo")

    @flow
    def f() -> None:
        returns_failed(return_state=True)

    f()
    assert log == ["undo"]


def test_a_rolled_back_block_leaves_no_cache_entry_and_marks_its_task_runs(db_path):
    import uuid as uuid_mod

    from millstream import get_client

    calls: list[int] = []
    key = f"rollback-{uuid_mod.uuid4().hex}"

    @task(cache_key_fn=lambda ctx, params: key, persist_result=True)
    def t() -> int:
        calls.append(1)
        return 5

    @flow
    def f(fail: bool) -> str:
        with transaction():
            state = t(return_state=True)
            if fail:
                raise ValueError("x")
        return state.name

    with pytest.raises(ValueError):
        f(True)
    assert len(calls) == 1
    # Prefect 3.9.1: the rolled-back run's cache record was never written, so this runs again.
    assert f(False) == "Completed" and len(calls) == 2
    assert f(False) == "Cached" and len(calls) == 2
    with get_client(sync_client=True) as client:
        names = sorted(run.state.name for run in client.read_task_runs())
    assert names == ["Cached", "Completed", "RolledBack"]


def test_an_async_task_has_an_async_transaction_whose_hooks_are_awaited():
    log: list = []

    @task
    async def step() -> int:
        log.append(type(get_transaction()).__name__)
        return 1

    @step.on_commit
    async def committed(txn) -> None:
        log.append(("commit", type(txn).__name__))

    @flow
    async def f() -> None:
        await step()

    @flow
    async def in_block() -> None:
        with transaction():
            await step()
            assert log[-1] == "AsyncTransaction"

    asyncio.run(f())
    assert log == ["AsyncTransaction", ("commit", "AsyncTransaction")]
    log.clear()
    asyncio.run(in_block())
    assert log == ["AsyncTransaction", ("commit", "AsyncTransaction")]
