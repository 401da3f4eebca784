"""``AsyncTransaction`` and ``atransaction()``: transactions for async code, hooks awaited
(the semantics are ``transactions``')."""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread

from millstream._engine.orchestrate.transaction_hooks import Hook, hook_logged
from millstream._engine.orchestrate.transactions import (
    _DONE,
    BaseTransaction,
    CommitMode,
    IsolationLevel,
    TransactionState,
    _open,
)
from millstream._engine.results.records import ResultRecord
from millstream._engine.results.result_store import ResultStore

__all__ = ["AsyncTransaction", "atransaction"]


class AsyncTransaction(BaseTransaction):
    """A transaction used with ``async with``: hooks are awaited, sync ones on a thread."""

    async def __aenter__(self) -> AsyncTransaction:
        self.prepare_transaction()
        await self.begin()
        self._enter()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        for step in self._exit_steps(exc_type is not None):
            await getattr(self, step)()

    def __enter__(self) -> Any:
        raise NotImplementedError(
            "AsyncTransaction does not support the `with` statement. Use the `async with` "
            "statement instead."
        )

    def __exit__(self, *exc_info: Any) -> Any:
        raise NotImplementedError(
            "AsyncTransaction does not support the `with` statement. Use the `async with` "
            "statement instead."
        )

    async def begin(self) -> None:
        """Take the key's lock (SERIALIZABLE), and find an existing record (committed)."""
        if self._serializable():
            assert self.store is not None and self.key is not None
            await self.store.aacquire_lock(self.key, holder=self._holder)
        if not self.overwrite and self.store is not None and self.key:
            if await self.store.aexists(key=self.key):
                self.state = TransactionState.COMMITTED

    async def read(self) -> ResultRecord[Any] | None:
        """The record stored under the key (None without a store and key)."""
        if self.store is not None and self.key:
            return await self.store.aread(key=self.key, holder=self._holder)
        return None

    async def reset(self) -> None:
        """Leave the context; a rolled-back transaction rolls its parent back."""
        parent = self._leave_rolled_back()
        if parent is not None:
            outcome = parent.rollback()
            if inspect.isawaitable(outcome):
                await outcome

    async def commit(self) -> bool:
        """Commit children, run commit hooks, write the staged value (see ``Transaction``)."""
        if self.state in _DONE:
            self._release()
            return False
        try:
            for child in self.children:
                outcome = child.commit()
                if inspect.isawaitable(outcome):
                    await outcome
            for hook in self.on_commit_hooks:
                await self.run_hook(hook, "commit")
            if self.store is not None and self.key and self.write_on_commit:
                if isinstance(self._staged_value, ResultRecord):
                    await self.store.apersist_result_record(self._staged_value, self._holder)
                else:
                    await self.store.awrite(
                        key=self.key, obj=self._staged_value, holder=self._holder
                    )
            self.state = TransactionState.COMMITTED
            self._release()
            return True
        except Exception as exc:
            self._commit_failed(exc)
        await self.rollback()
        return False

    async def run_hook(self, hook: Hook, hook_type: str) -> None:
        """Await one hook (a sync one on a worker thread), logging it."""
        with hook_logged(self.logger, hook, hook_type):
            if inspect.iscoroutinefunction(hook):
                await hook(self)
            else:
                result = await anyio.to_thread.run_sync(hook, self)
                if inspect.isawaitable(result):
                    await result

    async def rollback(self) -> bool:
        """Run rollback hooks (last first), then roll children back (see ``Transaction``)."""
        if self.state in _DONE:
            return False
        try:
            for hook in reversed(self.on_rollback_hooks):
                await self.run_hook(hook, "rollback")
            self.state = TransactionState.ROLLED_BACK
            for child in reversed(self.children):
                outcome = child.rollback()
                if inspect.isawaitable(outcome):
                    await outcome
            return True
        except Exception:
            self._rollback_failed()
            return False
        finally:
            self._release()


@contextlib.asynccontextmanager
async def atransaction(
    key: str | None = None,
    store: ResultStore | None = None,
    commit_mode: CommitMode | str | None = None,
    isolation_level: IsolationLevel | str | None = None,
    overwrite: bool = False,
    write_on_commit: bool = True,
    logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
) -> AsyncIterator[AsyncTransaction]:
    """``transaction()`` for async code: hooks are awaited."""
    txn = _open(
        AsyncTransaction,
        key,
        store,
        commit_mode,
        isolation_level,
        overwrite,
        write_on_commit,
        logger,
    )
    async with txn:
        yield txn
