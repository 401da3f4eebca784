"""Transactions: blocks whose staged values and ``on_commit`` / ``on_rollback`` hooks commit or
roll back together, with Prefect 3's semantics.

Life of a transaction: PENDING → ACTIVE on enter (COMMITTED at once when its ``store`` already
holds a record under its ``key``, unless ``overwrite``) → STAGED by ``stage(value, hooks)`` →
COMMITTED or ROLLED_BACK. On a clean exit an EAGER transaction commits; a nested one then
hands itself to its parent (which commits or rolls back its children with itself); an
outermost LAZY one commits, an outermost OFF one rolls back. An exception rolls back, and a
rolled-back child rolls its parent back. Commit runs the children's commits, then the commit
hooks in order, then writes the staged value to the store (``write_on_commit``); rollback runs
the rollback hooks in reverse order, then the children's rollbacks in reverse order.

``AsyncTransaction`` / ``atransaction()`` are in ``async_transactions``; the transactions of
task runs in ``task_transactions``.
"""

from __future__ import annotations

import contextlib
import copy
import enum
import inspect
import logging
from collections.abc import Iterator
from contextvars import ContextVar, Token
from typing import Any, ClassVar

from millstream._engine.exceptions import (
    ConfigurationError,
    MissingContextError,
    SerializationError,
)
from millstream._engine.orchestrate.context import task_run_var
from millstream._engine.orchestrate.transaction_hooks import Hook, call_sync, hook_logged
from millstream._engine.results.records import ResultRecord
from millstream._engine.results.result_store import ResultStore

_default_logger = logging.getLogger("millstream.transactions")

_NOT_SET: Any = object()


class IsolationLevel(enum.StrEnum):
    """How a keyed transaction guards its record: READ_COMMITTED, or SERIALIZABLE (a lock on
    the key, held from enter to commit or rollback; needs a store with a lock manager)."""

    READ_COMMITTED = "READ_COMMITTED"
    SERIALIZABLE = "SERIALIZABLE"


class CommitMode(enum.StrEnum):
    """When a transaction commits: on its own exit (EAGER), with its outermost parent (LAZY),
    or only when ``commit()`` is called (OFF: rolled back at the outermost exit otherwise)."""

    EAGER = "EAGER"
    LAZY = "LAZY"
    OFF = "OFF"


class TransactionState(enum.StrEnum):
    """Where a transaction is in its life."""

    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    STAGED = "STAGED"
    COMMITTED = "COMMITTED"
    ROLLED_BACK = "ROLLED_BACK"


_DONE = (TransactionState.ROLLED_BACK, TransactionState.COMMITTED)


class BaseTransaction:
    """A transaction's state: key, store, children, mode, hooks, staged and stored values."""

    __var__: ClassVar[ContextVar[BaseTransaction | None]] = ContextVar("transaction", default=None)
    _FIELDS: ClassVar[tuple[str, ...]] = (
        "store",
        "key",
        "children",
        "commit_mode",
        "isolation_level",
        "state",
        "on_commit_hooks",
        "on_rollback_hooks",
        "overwrite",
        "write_on_commit",
    )

    def __init__(
        self,
        *,
        store: ResultStore | None = None,
        key: str | None = None,
        children: list[BaseTransaction] | None = None,
        commit_mode: CommitMode | str | None = None,
        isolation_level: IsolationLevel | str | None = IsolationLevel.READ_COMMITTED,
        state: TransactionState | str = TransactionState.PENDING,
        on_commit_hooks: list[Hook] | None = None,
        on_rollback_hooks: list[Hook] | None = None,
        overwrite: bool = False,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
        write_on_commit: bool = True,
    ) -> None:
        self.store = store
        self.key = key
        self.children: list[BaseTransaction] = list(children or [])
        self.commit_mode = CommitMode(commit_mode) if commit_mode is not None else None
        self.isolation_level = (
            IsolationLevel(isolation_level) if isolation_level is not None else None
        )
        self.state = TransactionState(state)
        self.on_commit_hooks: list[Hook] = list(on_commit_hooks or [])
        self.on_rollback_hooks: list[Hook] = list(on_rollback_hooks or [])
        self.overwrite = overwrite
        self.logger: logging.Logger | logging.LoggerAdapter[Any] = logger or _default_logger
        self.write_on_commit = write_on_commit
        self._stored_values: dict[str, Any] = {}
        self._staged_value: Any = None
        self._holder = ResultStore.generate_default_holder() + f":{id(self)}"
        self._token: Token[BaseTransaction | None] | None = None
        self._parent: BaseTransaction | None = None
        # The task run this transaction was entered in (None: outside task bodies).
        self._entered_in: Any = None
        # A task run's own transaction is never entered: its parent is fixed when it is made.
        self._task_owned = False

    # -- values ------------------------------------------------------------------------------

    def set(self, name: str, value: Any) -> None:
        """Store a value for this transaction and the ones nested in it."""
        self._stored_values[name] = value

    def get(self, name: str, default: Any = _NOT_SET) -> Any:
        """A copy of a value set here or in an enclosing transaction (a copy: changing it
        changes nothing until ``set``); ``ValueError`` naming it when unknown and no default."""
        if name in self._stored_values:
            return copy.deepcopy(self._stored_values[name])
        parent = self.get_parent()
        if parent is not None:
            return parent.get(name, default)
        if default is not _NOT_SET:
            return default
        raise ValueError(f"Could not retrieve value for unknown key: {name}")

    # -- state -------------------------------------------------------------------------------

    def is_committed(self) -> bool:
        """Whether the transaction committed (or found its record already stored)."""
        return self.state == TransactionState.COMMITTED

    def is_rolled_back(self) -> bool:
        """Whether the transaction rolled back."""
        return self.state == TransactionState.ROLLED_BACK

    def is_staged(self) -> bool:
        """Whether a value is staged and not yet committed."""
        return self.state == TransactionState.STAGED

    def is_pending(self) -> bool:
        """Whether the transaction has not been entered yet."""
        return self.state == TransactionState.PENDING

    def is_active(self) -> bool:
        """Whether the transaction is entered and nothing is staged yet."""
        return self.state == TransactionState.ACTIVE

    def prepare_transaction(self) -> None:
        """Check the configuration and take defaults from the parent, before entering."""
        if self._token is not None:
            raise RuntimeError("Context already entered. Context enter calls cannot be nested.")
        parent = get_transaction()
        if self.commit_mode is None:
            self.commit_mode = parent.commit_mode if parent is not None else CommitMode.LAZY
        if self.isolation_level is None:
            self.isolation_level = (
                parent.isolation_level if parent is not None else IsolationLevel.READ_COMMITTED
            )
        if (
            self.store is not None
            and self.key
            and not self.store.supports_isolation_level(self.isolation_level)
        ):
            assert self.isolation_level is not None
            raise ConfigurationError(
                f"Isolation level {self.isolation_level.name} is not supported by provided "
                "configuration. Please ensure you've provided a lock file directory or lock "
                "manager when using the SERIALIZABLE isolation level."
            )
        self._parent = parent
        self.state = TransactionState.ACTIVE

    def add_child(self, transaction: BaseTransaction) -> None:
        """Make ``transaction`` commit and roll back with this one."""
        self.children.append(transaction)

    def get_parent(self) -> BaseTransaction | None:
        """The enclosing transaction (while entered, the one it was entered in)."""
        if self._token is not None or self._task_owned:
            return self._parent
        return get_transaction()

    def stage(
        self,
        value: Any,
        on_rollback_hooks: list[Hook] | None = None,
        on_commit_hooks: list[Hook] | None = None,
    ) -> None:
        """Stage a value (written to the store at commit) and hooks; nothing once committed."""
        if self.state != TransactionState.COMMITTED:
            self._staged_value = value
            self.on_rollback_hooks += list(on_rollback_hooks or [])
            self.on_commit_hooks += list(on_commit_hooks or [])
            self.state = TransactionState.STAGED

    def commit(self) -> Any:
        """Commit (``Transaction``: a bool; ``AsyncTransaction``: an awaitable of one)."""
        raise NotImplementedError

    def rollback(self) -> Any:
        """Roll back (``Transaction``: a bool; ``AsyncTransaction``: an awaitable of one)."""
        raise NotImplementedError

    @classmethod
    def get_active(cls) -> BaseTransaction | None:
        """The innermost entered transaction, or None."""
        return BaseTransaction.__var__.get()

    def _serializable(self) -> bool:
        return bool(
            self.store is not None
            and self.key
            and self.isolation_level == IsolationLevel.SERIALIZABLE
        )

    def _release(self) -> None:
        if self._serializable():
            assert self.store is not None and self.key is not None
            self.logger.debug("Releasing lock for transaction %r", self.key)
            with contextlib.suppress(ValueError):  # taken over after its hold timeout
                self.store.release_lock(self.key, holder=self._holder)

    def _enter(self) -> None:
        self._entered_in = task_run_var.get()
        self._token = BaseTransaction.__var__.set(self)

    def _leave(self) -> BaseTransaction | None:
        """Reset the context; the parent takes this transaction as a child."""
        parent = self.get_parent()
        if parent is not None:
            parent.add_child(self)
        if self._token is not None:
            BaseTransaction.__var__.reset(self._token)
            self._token = None
        return parent

    def _exit_steps(self, failed: bool) -> list[str]:
        """The methods leaving the block calls, in order (``Transaction`` and
        ``AsyncTransaction`` run the same steps, one plainly, one awaited)."""
        if self._token is None:
            raise RuntimeError("Asymmetric use of context. Context exit called without an enter.")
        if failed:
            return ["rollback", "reset"]  # the exception propagates
        steps = ["commit"] if self.commit_mode == CommitMode.EAGER else []
        if self.get_parent() is None:
            if self.commit_mode == CommitMode.OFF:
                steps.append("rollback")  # nobody committed it; does nothing when it was
            elif self.commit_mode == CommitMode.LAZY:
                steps.append("commit")
        return [*steps, "reset"]

    def _leave_rolled_back(self) -> BaseTransaction | None:
        """Leave the context: the parent to roll back with this one (None: nothing to roll)."""
        parent = self._leave()
        if parent is not None and self.state == TransactionState.ROLLED_BACK:
            return parent
        return None

    def _commit_failed(self, exc: Exception) -> None:
        """Log why a commit failed (called in its ``except``, so the traceback is logged)."""
        if isinstance(exc, SerializationError):
            self.logger.warning(
                "Encountered an error while serializing result for transaction %r: %s Code "
                "execution will continue, but the transaction will not be committed.",
                self.key,
                exc,
            )
        else:
            self.logger.exception(
                "An error was encountered while committing transaction %r", self.key
            )

    def _rollback_failed(self) -> None:
        self.logger.exception(
            "An error was encountered while rolling back transaction %r", self.key
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BaseTransaction):
            return False
        return all(getattr(self, f) == getattr(other, f) for f in self._FIELDS)

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self.key!r}, state={self.state.value})"


class Transaction(BaseTransaction):
    """A transaction used with ``with``."""

    def __enter__(self) -> Transaction:
        self.prepare_transaction()
        self.begin()
        self._enter()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        for step in self._exit_steps(exc_type is not None):
            getattr(self, step)()

    def begin(self) -> None:
        """Take the key's lock (SERIALIZABLE), and find an existing record (committed)."""
        if self._serializable():
            assert self.store is not None and self.key is not None
            self.logger.debug("Acquiring lock for transaction %r", self.key)
            self.store.acquire_lock(self.key, holder=self._holder)
        if not self.overwrite and self.store is not None and self.key:
            if self.store.exists(key=self.key):
                self.state = TransactionState.COMMITTED

    def read(self) -> ResultRecord[Any] | None:
        """The record stored under the key (None without a store and key)."""
        if self.store is not None and self.key:
            return self.store.read(key=self.key, holder=self._holder)
        return None

    def reset(self) -> None:
        """Leave the context; a rolled-back transaction rolls its parent back."""
        parent = self._leave_rolled_back()
        if parent is not None:
            outcome = parent.rollback()
            if inspect.isawaitable(outcome):
                call_sync(lambda _txn: outcome, self)

    def commit(self) -> bool:
        """Commit children, run commit hooks, write the staged value; False when done
        already or when anything failed (then it rolls back)."""
        if self.state in _DONE:
            self._release()
            return False
        try:
            for child in self.children:
                call_sync(lambda _txn, child=child: child.commit(), self)
            for hook in self.on_commit_hooks:
                self.run_hook(hook, "commit")
            if self.store is not None and self.key and self.write_on_commit:
                if isinstance(self._staged_value, ResultRecord):
                    self.store.persist_result_record(self._staged_value, holder=self._holder)
                else:
                    self.store.write(key=self.key, obj=self._staged_value, holder=self._holder)
            self.state = TransactionState.COMMITTED
            self._release()
            return True
        except Exception as exc:
            self._commit_failed(exc)
        self.rollback()
        return False

    def run_hook(self, hook: Hook, hook_type: str) -> None:
        """Run one hook, logging it (a hook with ``log_on_run = False`` is not logged)."""
        with hook_logged(self.logger, hook, hook_type):
            call_sync(hook, self)

    def rollback(self) -> bool:
        """Run rollback hooks (last first), then roll children back; False when done
        already or when a hook failed."""
        if self.state in _DONE:
            return False
        try:
            for hook in reversed(self.on_rollback_hooks):
                self.run_hook(hook, "rollback")
            self.state = TransactionState.ROLLED_BACK
            for child in reversed(self.children):
                call_sync(lambda _txn, child=child: child.rollback(), self)
            return True
        except Exception:
            self._rollback_failed()
            return False
        finally:
            self._release()


# -- the current transaction, and the task runs' own ---------------------------------------------

transaction_var = BaseTransaction.__var__


def get_transaction() -> BaseTransaction | None:
    """The innermost transaction: inside a task body, the task run's own (or one entered in
    the body); elsewhere the innermost ``transaction()`` block, or None."""
    current = transaction_var.get()
    ctx = task_run_var.get()
    if ctx is None or (current is not None and current._entered_in is ctx):
        return current
    from millstream._engine.orchestrate.task_transactions import own_transaction

    return own_transaction(ctx, current)


def _run_logger() -> logging.Logger | logging.LoggerAdapter[Any]:
    from millstream._engine.logs.loggers import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return _default_logger


def _open(
    cls: type[BaseTransaction],
    key: str | None,
    store: Any,
    commit_mode: CommitMode | str | None,
    isolation_level: IsolationLevel | str | None,
    overwrite: bool,
    write_on_commit: bool,
    logger: Any,
) -> Any:
    if key and store is None:
        store = _current_result_store()
    elif store is not None and not isinstance(store, ResultStore):
        raise TypeError(f"transaction(store=...) takes a ResultStore, got {store!r}")
    return cls(
        key=key,
        store=store,
        commit_mode=commit_mode,
        isolation_level=isolation_level,
        overwrite=overwrite,
        write_on_commit=write_on_commit,
        logger=logger or _run_logger(),
    )


def _current_result_store() -> ResultStore:
    from millstream._engine.orchestrate.context import flow_run_var

    store = ResultStore()
    for ctx in (flow_run_var.get(), task_run_var.get()):
        spec = getattr(ctx, "spec", None)
        if spec is not None:
            store = store.update_for_task(spec)
    return store


@contextlib.contextmanager
def transaction(
    key: str | None = None,
    store: ResultStore | None = None,
    commit_mode: CommitMode | str | None = None,
    isolation_level: IsolationLevel | str | None = None,
    overwrite: bool = False,
    write_on_commit: bool = True,
    logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
) -> Iterator[Transaction]:
    """Run a block as a transaction: commit on clean exit, roll back if it raises.

    With a ``key`` the staged value is written to ``store`` (default: the current run's result
    store) at commit, and a later transaction with the same key starts COMMITTED.
    """
    txn = _open(
        Transaction, key, store, commit_mode, isolation_level, overwrite, write_on_commit, logger
    )
    with txn:
        yield txn
