"""The only place that starts threads or loops: the sync bridge, executors and task runners.

Modules: ``loops`` (private loops of sync callers, the portal), ``threads`` (anyio worker
threads: submitted sync bodies, ``call_with_timeout``), ``executors`` (the ``Executor``
protocol, lanes), ``task_runners`` (the base, the thread pool, the remote executor protocol),
``processes`` (the process pool runner; whether a pid lives), ``dask_runner``. Bodies given to
a process pool or Dask leave this process as bytes and come back as bytes: what crosses is
``orchestrate.remote``'s.

The thread-and-loop model::

    caller thread, no loop running           caller thread running loop L (e.g. FastAPI)
    (a script's main thread, a worker         ─────────────────────────────────────────
    thread of the user's)                     async flow / task:  awaited on L itself;
    ────────────────────────────────          async bodies run on L, no thread hop
    run_here: drives the orchestration        sync flow / task called on L:
    coroutine on P, a loop private to            Portal.call ──► engine loop E runs the
    this thread (one per nesting depth)          orchestration; the thread waits in
    sync body: INLINE, on this thread,           CallerThread.serve and runs the sync body
    with no loop marked running                  posted back to it (L is held meanwhile)
              │                                               │
              │ tasks a sync flow submits go to E             │ tasks a sync flow submits go to E;
              ▼ (P stops while a body runs)                   ▼ an async flow's stay on L
    ┌──────────────────────────────────────────────────────────────────────────────────────┐
    │ "millstream-engine": one daemon thread per process, loop E (run_until_complete of a  │
    │ task that never ends, so anyio sees a root task and keeps its worker threads).       │
    │ Runs the orchestration of sync calls made on a running loop and the task runs that   │
    │ sync flows submit; async bodies of those runs run on E.                              │
    └──────────────────────────────────────────────────────────────────────────────────────┘
    submitted sync task body: WORKER_THREADS, anyio.to_thread.run_sync (abandon_on_cancel)
        on an anyio worker thread of the loop running the task run when that loop's thread
        is a daemon (E, a lane), else of E (anyio's workers inherit the daemon flag, and a
        stuck body must not hold up the interpreter's exit); bounded by the task runner's
        slots (ThreadPoolTaskRunner(max_workers)), which a run gives back while it waits.
    sync body with timeout_seconds: call_with_timeout, the same worker threads under
        anyio.move_on_after: TimedOut at the deadline, the thread abandoned (runs on, its
        outcome dropped).
    "millstream-lane": a daemon thread with a loop of its own for one task run whose loop's
        thread is blocked in a sync wait (``future.result()`` on L or E); its sync body runs
        on that lane loop's anyio worker thread.
    "millstream-nested": a sync flow called by code running on E itself orchestrates on a
        fresh private loop in a thread of its own (blocking E would deadlock).

Where a sync body runs: on the calling thread when called (a sync flow, a task called in a
sync flow), on an anyio worker thread when submitted or given a timeout. The engine never
runs a sync body from inside its loops: on L's thread it runs within the user's own blocking
call, as a direct call would.

The portal is hand-built rather than ``anyio.from_thread.BlockingPortal``: a round trip with a
trivial coroutine costs 38 us against 95 us through a ``BlockingPortal`` (median of 7 x 2000
calls on the 2-core development machine), which first waits for the loop to acknowledge each
spawn and runs each call in a task group under a cancel scope.
"""
