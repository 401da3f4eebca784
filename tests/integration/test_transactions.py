"""Transactions: task on_commit / on_rollback hooks, values, nesting."""

from __future__ import annotations

import pytest

from millstream import flow, task
from millstream.transactions import get_transaction, transaction


def make_task(log: list):
    @task
    def step(name: str) -> str:
        log.append(("body", name))
        return name

    @step.on_commit
    def committed(txn) -> None:
        log.append(("commit", txn.key))

    @step.on_rollback
    def rolled_back(txn) -> None:
        log.append(("rollback", txn.key))

    return step


def test_a_task_outside_a_block_commits_when_it_completes():
    log: list = []
    step = make_task(log)

    @flow
    def f() -> None:
        step("a")

    f()
    assert [entry[0] for entry in log] == ["body", "commit"]


def test_hooks_wait_for_the_block_and_roll_back_when_it_raises():
    log: list = []
    step = make_task(log)

    @task
    def bad() -> None:
        raise ValueError("boom")

    @flow
    def f() -> None:
        with transaction(key="outer") as txn:
            txn.set("answer", 42)
            step("a")
            assert get_transaction() is txn
            assert txn.get("answer") == 42
            assert log == [("body", "a")]
            bad()

    with pytest.raises(ValueError):
        f()
    assert [entry[0] for entry in log] == ["body", "rollback"]


def test_a_clean_block_commits_its_task_runs():
    log: list = []
    step = make_task(log)

    @flow
    def f() -> None:
        with transaction():
            step("a")
            step("b")
            assert [e[0] for e in log] == ["body", "body"]

    f()
    assert [e[0] for e in log] == ["body", "body", "commit", "commit"]


def test_nested_values_and_missing_keys():
    with transaction() as outer:
        outer.set("x", 1)
        with transaction() as inner:
            assert inner.get("x") == 1
            assert inner.get("y", "dflt") == "dflt"
            with pytest.raises(ValueError, match=r"unknown key: y$"):
                inner.get("y")
    assert outer.is_committed() and inner.is_committed()


def test_a_raising_task_stages_nothing_so_its_own_rollback_hook_never_runs():
    # Prefect 3.9.1: a task that raises never stages its result, so neither its commit nor
    # its rollback hooks run, in or out of a flow.
    log: list = []

    @task
    def failing() -> None:
        raise RuntimeError("no")

    @failing.on_rollback
    def undo(txn) -> None:
        log.append("undo")

    with pytest.raises(RuntimeError):
        failing()

    @flow
    def f() -> None:
        failing(return_state=True)

    f()
    assert log == []


def test_serializable_needs_a_store_with_a_lock_manager():
    from millstream.exceptions import ConfigurationError
    from millstream.results import ResultStore

    with pytest.raises(ConfigurationError, match="Isolation level SERIALIZABLE is not supported"):
        with transaction(key="k", store=ResultStore(), isolation_level="SERIALIZABLE"):
            pass
