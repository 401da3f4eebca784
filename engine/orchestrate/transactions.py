"""Transactions: group task runs so their ``on_commit`` / ``on_rollback`` hooks fire together.

A ``transaction()`` block commits when it exits cleanly and rolls back when it raises. Every
task run with such hooks runs in a transaction of its own: inside a block its hooks wait for
the block's outcome; outside one they fire as soon as the run ends (commit on completion,
rollback on failure), as in Prefect 3.
"""

from __future__ import annotations

import contextlib
import enum
import logging
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

from millstream._engine.exceptions import NotSupportedError
from millstream._engine.model.ids import new_id

logger = logging.getLogger("millstream.transactions")

_MISSING: Any = object()


class CommitMode(enum.StrEnum):
    """When a nested transaction commits: with its outermost parent (LAZY), on its own exit
    (EAGER), or never (OFF: its commit hooks never fire)."""

    EAGER = "EAGER"
    LAZY = "LAZY"
    OFF = "OFF"


class IsolationLevel(enum.StrEnum):
    """Only READ_COMMITTED is provided by the embedded engine."""

    READ_COMMITTED = "READ_COMMITTED"
    SERIALIZABLE = "SERIALIZABLE"


class TransactionState(enum.StrEnum):
    """Where a transaction is in its life."""

    ACTIVE = "ACTIVE"
    COMMITTED = "COMMITTED"
    ROLLED_BACK = "ROLLED_BACK"


Hook = Callable[["Transaction"], Any]


class Transaction:
    """A group of task runs committed or rolled back together, with a scratch key/value space."""

    def __init__(self, key: str | None = None, commit_mode: CommitMode = CommitMode.LAZY) -> None:
        self.key = key or new_id().hex
        self.commit_mode = commit_mode
        self.state = TransactionState.ACTIVE
        self.parent: Transaction | None = None
        self._values: dict[str, Any] = {}
        self._on_commit: list[Hook] = []
        self._on_rollback: list[Hook] = []
        self._children: list[Transaction] = []

    def set(self, name: str, value: Any) -> None:
        """Store a value visible to this transaction and the ones nested in it."""
        self._values[name] = value

    def get(self, name: str, default: Any = _MISSING) -> Any:
        """A value set in this transaction or an enclosing one."""
        txn: Transaction | None = self
        while txn is not None:
            if name in txn._values:
                return txn._values[name]
            txn = txn.parent
        if default is _MISSING:
            raise ValueError(f"Could not retrieve value for unknown key: {name!r}")
        return default

    def add_hooks(self, on_commit: tuple[Hook, ...], on_rollback: tuple[Hook, ...]) -> None:
        """Register hooks to fire when this transaction commits or rolls back."""
        self._on_commit.extend(on_commit)
        self._on_rollback.extend(on_rollback)

    def is_committed(self) -> bool:
        return self.state is TransactionState.COMMITTED

    def is_rolled_back(self) -> bool:
        return self.state is TransactionState.ROLLED_BACK

    def is_active(self) -> bool:
        return self.state is TransactionState.ACTIVE

    def commit(self) -> bool:
        """Commit: fire commit hooks (and those of lazily nested transactions)."""
        if self.state is not TransactionState.ACTIVE:
            return False
        if self.commit_mode is CommitMode.OFF:
            return False
        for child in self._children:
            child.commit()
        self.state = TransactionState.COMMITTED
        _fire(self._on_commit, self, "on_commit")
        return True

    def rollback(self) -> bool:
        """Roll back: fire rollback hooks, nested transactions first."""
        if self.state is TransactionState.ROLLED_BACK:
            return False
        for child in reversed(self._children):
            child.rollback()
        was_committed = self.state is TransactionState.COMMITTED
        self.state = TransactionState.ROLLED_BACK
        if not was_committed or self.commit_mode is CommitMode.EAGER:
            _fire(self._on_rollback, self, "on_rollback")
        return True

    def __repr__(self) -> str:
        return f"Transaction(key={self.key!r}, state={self.state.value})"


def _fire(hooks: list[Hook], txn: Transaction, kind: str) -> None:
    for hook in hooks:
        try:
            hook(txn)
        except Exception:
            logger.exception("An error was encountered while running %s hook %r", kind, hook)


transaction_var: ContextVar[Transaction | None] = ContextVar("transaction", default=None)


def get_transaction() -> Transaction | None:
    """The innermost active transaction, or None."""
    return transaction_var.get()


@contextlib.contextmanager
def transaction(
    key: str | None = None,
    store: Any = None,
    commit_mode: CommitMode | str | None = None,
    isolation_level: IsolationLevel | str | None = None,
    overwrite: bool = False,
    write_on_commit: bool = True,
    logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
) -> Iterator[Transaction]:
    """Run a block as a transaction: commit on clean exit, roll back if it raises."""
    if store is not None:
        raise NotSupportedError(
            f"transaction(store={store!r}): result stores are not configurable per transaction "
            "in the embedded engine; results go to the task's result_storage"
        )
    if isolation_level is not None and IsolationLevel(isolation_level) is not (
        IsolationLevel.READ_COMMITTED
    ):
        raise NotSupportedError(
            f"transaction(isolation_level={isolation_level!r}): only READ_COMMITTED is provided"
        )
    if overwrite or not write_on_commit:
        raise NotSupportedError(
            f"transaction(overwrite={overwrite!r}, write_on_commit={write_on_commit!r}): task "
            "results are always written when the task run ends"
        )
    mode = CommitMode(commit_mode) if commit_mode is not None else CommitMode.LAZY
    txn = Transaction(key, mode)
    parent = transaction_var.get()
    txn.parent = parent
    token = transaction_var.set(txn)
    try:
        yield txn
    except BaseException:
        transaction_var.reset(token)
        txn.rollback()
        raise
    transaction_var.reset(token)
    if parent is not None and mode is CommitMode.LAZY:
        parent._children.append(txn)  # commits (or rolls back) with its parent
    else:
        txn.commit()
        if parent is not None:
            parent._children.append(txn)


def task_run_finished(
    completed: bool, on_commit: tuple[Hook, ...], on_rollback: tuple[Hook, ...], key: str | None
) -> None:
    """Give a finished task run's transaction hooks to the enclosing transaction, or fire
    them now when the run is its own transaction."""
    outer = transaction_var.get()
    own = Transaction(key)
    own.add_hooks(on_commit, on_rollback)
    if not completed:
        own.rollback()
    elif outer is not None and outer.is_active():
        own.parent = outer
        outer._children.append(own)
    else:
        own.commit()
