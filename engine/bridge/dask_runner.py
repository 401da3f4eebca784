"""``DaskTaskRunner``: submitted task bodies on a Dask cluster (``dask.distributed``).

A temporary ``LocalCluster`` per flow run by default (or ``cluster_class(**cluster_kwargs)``),
or an existing scheduler by ``address``. ``distributed`` is imported when a flow run first
submits a body, never before (the ``dask`` extra). The client, and the cluster it made, are
closed when the flow run ends. Bodies run on the workers; their outcome (and the lines they
logged) return to this process, which records them (``orchestrate.remote``).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import logging
import threading
from collections.abc import Callable
from typing import Any

from millstream._engine.bridge.executors import Executor
from millstream._engine.bridge.task_runners import RemoteBase, TaskRunner
from millstream._engine.bridge.threads import run_in_worker
from millstream._engine.exceptions import MissingExtraError
from millstream._engine.model.ids import new_id

logger = logging.getLogger("millstream.task_runners")

_NO_DASK = (
    "DaskTaskRunner needs dask.distributed, which is not installed: pip install 'millstream[dask]'"
)


def _distributed() -> Any:
    try:
        return importlib.import_module("distributed")
    except ImportError as exc:
        raise MissingExtraError(_NO_DASK) from exc


def _cluster_class(value: str | Callable[..., Any] | None) -> Callable[..., Any]:
    if value is None:
        return _distributed().LocalCluster  # type: ignore[no-any-return]
    if isinstance(value, str):
        module_name, _, name = value.rpartition(".")
        if not module_name:
            raise ValueError(
                f"cluster_class must be a dotted name like 'dask.distributed."
                f"LocalCluster', got {value!r}"
            )
        return getattr(importlib.import_module(module_name), name)  # type: ignore[no-any-return]
    if not callable(value):
        raise TypeError(
            f"cluster_class must be a class, a callable or a dotted name, got {value!r}"
        )
    return value


def _settle_all(settled: list[tuple[asyncio.Future[bytes], Any]]) -> None:
    for waiter, outcome in settled:
        if waiter.done():
            continue
        if isinstance(outcome, BaseException):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)


class _Gatherer:
    """Fetches the outcomes of submitted bodies as they finish, for all runs of a flow run.

    One ``distributed.as_completed(with_results=True)`` fetches them on the client's own loop,
    and one thread hands each to the loop awaiting it. Fetching each outcome with a blocking
    ``future.result()`` from a done callback would cost a round trip to the client's loop
    thread per task (about 3 ms of this process's CPU per task on a 2-core machine).
    """

    def __init__(self, distributed: Any, client: Any) -> None:
        self._done = distributed.as_completed(
            loop=client.loop, with_results=True, raise_errors=False
        )
        self._waiters: dict[Any, tuple[asyncio.AbstractEventLoop, asyncio.Future[bytes], Any]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._main, name="millstream-dask", daemon=True)
        self._thread.start()

    def track(
        self, future: Any, loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[bytes]
    ) -> None:
        """Settle ``waiter`` (on ``loop``) with ``future``'s outcome when it finishes."""
        with self._lock:
            self._waiters[future.key] = (loop, waiter, future)
        self._done.add(future)
        self._wake.set()

    def cancel(self, key: str) -> None:
        """Nobody waits for that body any more: cancel it on the cluster."""
        with self._lock:
            entry = self._waiters.pop(key, None)
        if entry is not None:
            entry[2].cancel()

    def _main(self) -> None:
        while not self._stopped:
            self._wake.wait()
            self._wake.clear()
            # Ends when nothing is left to wait for; a later ``track`` wakes this loop again.
            for batch in self._done.batches():
                self._settle(batch)

    def _settle(self, batch: list[tuple[Any, Any]]) -> None:
        """Hand a batch of outcomes to the loops awaiting them: one wake-up per loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[bytes], Any]]] = {}
        with self._lock:
            for future, outcome in batch:
                entry = self._waiters.pop(future.key, None)
                if entry is not None:  # else cancelled: nobody waits
                    by_loop.setdefault(entry[0], []).append((entry[1], outcome))
        for loop, settled in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop closed: nobody waits there
                loop.call_soon_threadsafe(_settle_all, settled)

    def stop(self) -> None:
        """End the thread (the flow run ends): nothing left to wait for ends its iteration
        (``as_completed`` looks again every 100 ms)."""
        self._stopped = True
        self._done.clear()
        self._wake.set()


class DaskClient(RemoteBase):
    """One flow run's Dask client (and the cluster it started, if any), made on first use."""

    by_reference_only = False

    def __init__(self, runner: DaskTaskRunner) -> None:
        super().__init__(runner.allow_pickle)
        self._runner = runner
        self._lock = threading.Lock()
        self.client: Any = None
        self.cluster: Any = None
        self._report: Any = None
        self._report_path: str | None = None
        self._gatherer: _Gatherer
        self._batch: list[tuple[bytes, str, asyncio.AbstractEventLoop, asyncio.Future[bytes]]] = []

    def _start(self) -> Any:
        with self._lock:
            if self.client is not None:
                return self.client
            distributed = _distributed()
            runner = self._runner
            kwargs = {"set_as_default": False, **runner.client_kwargs}
            if runner.address is not None:
                client = distributed.Client(runner.address, **kwargs)
            else:
                if runner.cluster is None and runner.cluster_class is None:
                    runner.cluster_class = _cluster_class(None)  # LocalCluster, as Prefect
                self.cluster = runner.cluster or _cluster_class(runner.cluster_class)(
                    **runner.cluster_kwargs
                )
                if runner.adapt_kwargs:
                    self.cluster.adapt(**runner.adapt_kwargs)
                client = distributed.Client(self.cluster, **kwargs)
            if runner.performance_report_path:
                self._report = distributed.performance_report(
                    filename=runner.performance_report_path
                )
                # The report finds its client as the current one; ours is not the default.
                with client.as_current():
                    self._report.__enter__()
                self._report_path = runner.performance_report_path
            self._gatherer = _Gatherer(distributed, client)
            self.client = client
            return client

    async def send(
        self, worker: Callable[..., bytes], request: bytes, fn: Any, timeout: float | None
    ) -> bytes:
        """Run ``worker(request[, fn])`` on a Dask worker and await its encoded outcome.

        Requests made in the same turn of the loop go to the scheduler together, in one
        ``client.map`` (as a user mapping bare Dask would): one message, not one per task.
        """
        client = self.client
        if client is None:
            client = await run_in_worker(self._start)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bytes] = loop.create_future()
        key = f"millstream-{new_id().hex}"
        if fn is not None:  # the function travels by value: a call of its own
            self._gatherer.track(client.submit(worker, request, fn, key=key), loop, waiter)
        else:
            with self._lock:
                self._batch.append((request, key, loop, waiter))
                first = len(self._batch) == 1
            if first:
                loop.call_soon(self._flush, worker)
        try:
            return await waiter
        except asyncio.CancelledError:
            self._gatherer.cancel(key)
            raise

    def _flush(self, worker: Callable[..., bytes]) -> None:
        with self._lock:
            batch, self._batch = self._batch, []
        if not batch or self.client is None:
            return
        futures = self.client.map(worker, [b[0] for b in batch], key=[b[1] for b in batch])
        for future, (_, _, loop, waiter) in zip(futures, batch, strict=True):
            self._gatherer.track(future, loop, waiter)

    def close(self) -> None:
        """Close the client, and the cluster if this flow run started it."""
        client, self.client = self.client, None
        if self._report is not None and client is not None:
            try:
                with client.as_current():
                    self._report.__exit__(None, None, None)
            except Exception as exc:  # the runs are done: say why the report is missing
                logger.warning(
                    "Dask's performance report could not be written to %s: %s",
                    self._report_path,
                    exc,
                )
        self._report = None
        if client is not None:
            self._gatherer.stop()
            client.close()
        cluster, self.cluster = self.cluster, None
        if cluster is not None and self._runner.cluster is None:
            cluster.close()


class DaskTaskRunner(TaskRunner):
    """Runs submitted task bodies, sync and async, on a Dask cluster; the flow, its states and
    its records stay in this process.

    ``cluster``: a running cluster object to use (left open). ``address``: the scheduler of an
    existing cluster. Otherwise ``cluster_class(**cluster_kwargs)`` (a class, a callable or a
    dotted name; default ``distributed.LocalCluster``) is started for each flow run and closed
    at its end, adapted with ``cluster.adapt(**adapt_kwargs)`` when given. ``client_kwargs``
    go to ``distributed.Client``. ``performance_report_path``: write Dask's performance report
    of the flow run there. ``allow_pickle``: as for ``ProcessPoolTaskRunner``. Task functions
    that workers cannot import by name (defined in ``__main__``, in a function) are shipped by
    Dask's own serialization of code. ``timeout_seconds`` is enforced by the worker, from the
    body's start: an async body is stopped at it, a sync one fails TimedOut when it returns.
    """

    def __init__(
        self,
        cluster: Any = None,
        address: str | None = None,
        cluster_class: str | Callable[..., Any] | None = None,
        cluster_kwargs: dict[str, Any] | None = None,
        adapt_kwargs: dict[str, Any] | None = None,
        client_kwargs: dict[str, Any] | None = None,
        performance_report_path: str | None = None,
        *,
        allow_pickle: bool = False,
    ) -> None:
        super().__init__()
        if address is not None and (cluster is not None or cluster_class or cluster_kwargs):
            raise ValueError(
                "Cannot specify `address` and `cluster`/`cluster_class`/`cluster_kwargs`: an "
                "address names a running cluster"
            )
        if cluster is not None and (cluster_class or cluster_kwargs):
            raise ValueError("Cannot specify `cluster` and `cluster_class`/`cluster_kwargs`")
        if performance_report_path is not None and importlib.util.find_spec("bokeh") is None:
            # Said now, not after every run when the report cannot be rendered.
            raise MissingExtraError(
                f"DaskTaskRunner(performance_report_path={performance_report_path!r}) needs "
                "bokeh, which renders Dask's performance report: "
                "pip install 'millstream[dask]' (or bokeh itself)"
            )
        client_kwargs = dict(client_kwargs or {})
        for name, given in (("client_kwargs", client_kwargs), ("cluster_kwargs", cluster_kwargs)):
            if given and "asynchronous" in given:
                raise ValueError(
                    f"`{name}` may not set 'asynchronous': the runner manages the client and "
                    "the cluster"
                )
        if cluster_class is not None:
            # Resolved now (a dotted name is imported), not at the first submit.
            cluster_class = _cluster_class(cluster_class)
        self.cluster = cluster
        self.address = address
        self.cluster_class = cluster_class
        self.cluster_kwargs = dict(cluster_kwargs or {})
        self.adapt_kwargs = dict(adapt_kwargs or {})
        self.client_kwargs = client_kwargs
        self.performance_report_path = performance_report_path
        self.allow_pickle = bool(allow_pickle)

    def acquire(self) -> Executor:
        return DaskClient(self)

    def release(self, executor: Executor) -> None:
        if isinstance(executor, DaskClient):
            executor.close()

    def duplicate(self) -> DaskTaskRunner:
        return DaskTaskRunner(
            cluster=self.cluster,
            address=self.address,
            cluster_class=self.cluster_class,
            cluster_kwargs=self.cluster_kwargs,
            adapt_kwargs=self.adapt_kwargs,
            client_kwargs=self.client_kwargs,
            performance_report_path=self.performance_report_path,
            allow_pickle=self.allow_pickle,
        )

    def __eq__(self, other: Any) -> bool:
        if type(other) is not type(self):
            return False
        return bool(
            self.cluster is other.cluster
            and self.address == other.address
            and self.cluster_class == other.cluster_class
            and self.cluster_kwargs == other.cluster_kwargs
            and self.adapt_kwargs == other.adapt_kwargs
            and self.client_kwargs == other.client_kwargs
        )

    def __hash__(self) -> int:
        return hash((type(self), self.address))

    def __repr__(self) -> str:
        where = f"address={self.address!r}" if self.address else "a temporary cluster"
        return f"DaskTaskRunner({where})"
