"""The transactions of task runs: the one a task body sees, what a finished run stages
(its hooks, its cache entry, a RolledBack mark), and SERIALIZABLE cache keys.

Every task run has a transaction of its own, the one ``get_transaction()`` returns inside its
body (made when first asked for: most task runs never look; an ``AsyncTransaction`` for an
async task). A completed task run stages its
result with its hooks: with no enclosing transaction it commits at once; inside a
``transaction()`` block it commits or rolls back with the block, and its cache entry is written
only when the block commits. A task run that raises stages nothing, so its own hooks never run
(as in Prefect); one that returns a Failed state rolls its own hooks back.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

from millstream._engine.exceptions import ConfigurationError
from millstream._engine.orchestrate.async_transactions import AsyncTransaction
from millstream._engine.orchestrate.transaction_hooks import Hook, call_sync
from millstream._engine.orchestrate.transactions import (
    _DONE,
    BaseTransaction,
    CommitMode,
    IsolationLevel,
    Transaction,
    TransactionState,
    _run_logger,
    transaction_var,
)
from millstream._engine.results.result_store import ResultStore

__all__ = [
    "atask_run_finished",
    "has_own_transaction",
    "lock_cache_key",
    "own_transaction",
    "put_cache_on_commit",
    "task_run_finished",
    "unlock_cache_key",
]

# Task runs' own transactions, made when their body first asks: task run id -> transaction.
_task_txns: dict[Any, BaseTransaction] = {}


def _new_task_transaction(
    key: str | None, parent: BaseTransaction | None, is_async: bool
) -> BaseTransaction:
    # An async task's is an AsyncTransaction, as in Prefect; either inherits the parent's
    # commit mode and isolation level.
    cls: type[BaseTransaction] = AsyncTransaction if is_async else Transaction
    txn = cls(
        key=key,
        store=ResultStore() if key else None,
        commit_mode=parent.commit_mode if parent is not None else CommitMode.LAZY,
        isolation_level=(
            parent.isolation_level if parent is not None else IsolationLevel.READ_COMMITTED
        ),
        write_on_commit=False,  # the task run records its own result (and cache entry)
        logger=_run_logger(),
    )
    txn.state = TransactionState.ACTIVE
    txn._parent = parent
    txn._task_owned = True
    return txn


def own_transaction(ctx: Any, parent: BaseTransaction | None) -> BaseTransaction:
    """The task run's own transaction (made now if its body had not asked for it yet)."""
    run_id = ctx.task_run.id
    txn = _task_txns.get(run_id)
    if txn is None:
        is_async = bool(getattr(ctx.spec, "is_async", False))
        txn = _new_task_transaction(ctx.task_run.cache_key, parent, is_async)
        txn._entered_in = ctx
        _task_txns[run_id] = txn
    return txn


# Cache entries of task runs inside a transaction() block, written when it commits.
_deferred_cache: dict[Any, Callable[[Any], None]] = {}


def put_cache_on_commit(
    store: Any, key: str, blob: bytes, expiration: Any, task_run_id: Any
) -> None:
    """Record a task run's cache entry now, or, inside a ``transaction()`` block, when the
    block commits (a rolled-back block leaves no entry, so the work runs again, as in
    Prefect)."""
    if transaction_var.get() is None:
        store.put_cache(key, blob, expiration, task_run_id)
        return

    def write(_txn: Any = None) -> None:
        store.put_cache(key, blob, expiration, task_run_id)

    _deferred_cache[task_run_id] = write


def has_own_transaction(task_run_id: Any) -> bool:
    """Whether a task run's end must settle a transaction: its body asked for it, its cache
    entry waits for a commit, or it ran inside a ``transaction()`` block."""
    return (
        task_run_id in _task_txns
        or task_run_id in _deferred_cache
        or transaction_var.get() is not None
    )


def _engine_hook(fn: Callable[[Any], None]) -> Callable[[Any], None]:
    fn.log_on_run = False  # type: ignore[attr-defined]  # not the user's: not logged
    return fn


def _rolled_back_marker(task_run: Any, store: Any) -> Callable[[Any], None]:
    def mark(_txn: Any) -> None:
        # As Prefect records it: the run completed, then its transaction rolled back.
        from millstream._engine.model.states import State, StateType

        rolled_back = State(
            type=StateType.COMPLETED,
            name="RolledBack",
            message="Task rolled back as part of transaction",
        )
        store.put_task_run_state(task_run, rolled_back)

    return _engine_hook(mark)


def _settle_plan(
    task_run: Any,
    state: Any,
    on_commit: tuple[Hook, ...],
    on_rollback: tuple[Hook, ...],
    store: Any,
    is_async: bool,
) -> tuple[BaseTransaction, list[str]]:
    """The task run's transaction with what its end stages, and the steps left to take:
    a completed run stages its hooks (and its cache entry, and a RolledBack mark), a Failed
    state returned rolls them back, a raised exception stages nothing; then the enclosing
    transaction adopts it, or it commits (or, OFF, rolls back) now."""
    txn = _task_txns.pop(task_run.id, None)
    if txn is None:
        txn = _new_task_transaction(task_run.cache_key, transaction_var.get(), is_async)
    deferred = _deferred_cache.pop(task_run.id, None)
    steps: list[str] = []
    kind = getattr(state.type, "value", state.type)
    if kind == "COMPLETED" and state.name == "Cached":
        txn.state = TransactionState.COMMITTED  # its record existed: nothing to commit
    elif kind == "COMPLETED":
        engine_rollback = [] if store is None else [_rolled_back_marker(task_run, store)]
        engine_commit = [] if deferred is None else [_engine_hook(deferred)]
        txn.stage(state.data, [*engine_rollback, *on_rollback], [*on_commit, *engine_commit])
    elif kind == "FAILED" and not _raised(state):
        txn.stage(state.data, list(on_rollback), list(on_commit))
        steps.append("rollback")
    parent = txn._parent
    if parent is not None and parent.state not in _DONE:
        steps.append("adopt")
        if txn.commit_mode == CommitMode.EAGER:
            steps.append("commit")
    else:
        steps.append("rollback" if txn.commit_mode == CommitMode.OFF else "commit")
    return txn, steps


def _settle(
    task_run: Any,
    state: Any,
    on_commit: tuple[Hook, ...],
    on_rollback: tuple[Hook, ...],
    store: Any,
    is_async: bool,
) -> Iterator[tuple[BaseTransaction, Any]]:
    """Take the steps of ``_settle_plan``, yielding the transaction with each step's outcome
    (an awaitable for an ``AsyncTransaction``): the caller finishes it before the next step."""
    txn, steps = _settle_plan(task_run, state, on_commit, on_rollback, store, is_async)
    for step in steps:
        if step == "adopt":
            assert txn._parent is not None
            txn._parent.add_child(txn)
            continue
        yield txn, getattr(txn, step)()


def task_run_finished(
    task_run: Any,
    state: Any,
    on_commit: tuple[Hook, ...],
    on_rollback: tuple[Hook, ...],
    store: Any = None,
    is_async: bool = False,
) -> None:
    """Settle a finished task run's own transaction (see ``_settle_plan``), blocking."""
    for txn, outcome in _settle(task_run, state, on_commit, on_rollback, store, is_async):
        if inspect.isawaitable(outcome):
            call_sync(lambda _txn, outcome=outcome: outcome, txn)


async def atask_run_finished(
    task_run: Any,
    state: Any,
    on_commit: tuple[Hook, ...],
    on_rollback: tuple[Hook, ...],
    store: Any = None,
    is_async: bool = True,
) -> None:
    """Settle a finished task run's own transaction (see ``_settle_plan``), awaiting."""
    for _txn, outcome in _settle(task_run, state, on_commit, on_rollback, store, is_async):
        if inspect.isawaitable(outcome):
            await outcome


def _raised(state: Any) -> bool:
    """Whether a Failed state came from an exception the body raised (not a returned state)."""
    data = getattr(state, "data", None)
    return isinstance(data, BaseException) or bool(getattr(state, "_raised", False))


# -- SERIALIZABLE cache policies: one run per cache key at a time --------------------------------


def _serializable_policy(policy: Any) -> bool:
    level = getattr(policy, "isolation_level", None)
    return getattr(level, "value", level) == "SERIALIZABLE"


async def lock_cache_key(policy: Any, key: str, task_run_id: Any) -> Any:
    """Take the cache key's lock for a SERIALIZABLE policy (waiting for the run holding it, whose
    cached result the lookup then finds); a Failed state when the policy has no lock manager."""
    if not _serializable_policy(policy):
        return None
    locks = getattr(policy, "lock_manager", None)
    if locks is None:
        from millstream._engine.model.states import failed_from_exception

        return failed_from_exception(
            ConfigurationError(
                "Isolation level SERIALIZABLE is not supported by provided configuration. "
                "Please ensure you've provided a lock file directory or lock manager when "
                "using the SERIALIZABLE isolation level."
            ),
            "Task run",
        )
    await locks.aacquire_lock(key, str(task_run_id))
    return None


def unlock_cache_key(policy: Any, key: str, task_run_id: Any) -> None:
    """Release the cache key's lock taken by ``lock_cache_key`` (nothing when not taken)."""
    if not _serializable_policy(policy):
        return
    locks = getattr(policy, "lock_manager", None)
    if locks is not None and locks.is_lock_holder(key, str(task_run_id)):
        locks.release_lock(key, str(task_run_id))
