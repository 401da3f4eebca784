"""Durable recovery: resume flow runs whose process died (``recover`` / ``arecover``)."""

from __future__ import annotations

from millstream._engine.bridge.task_runners import default_task_runner
from millstream._engine.serve.recovery import RecoveryReport, recover_all
from millstream._engine.serve.resumed import continue_resumed
from millstream._engine.store import get_store
from millstream._sync import run_sync


async def arecover(lease_seconds: float | None = None) -> RecoveryReport:
    """Resume, in this process, every flow run of the database whose owner is gone.

    A run is resumed in its own flow run id: task runs that completed before the crash are
    not run again (their recorded results are used), the rest run. ``lease_seconds`` is how
    old a heartbeat must be before a run on another host counts as orphaned.
    """
    from millstream._engine.settings import get_current_settings

    settings = get_current_settings()
    store = get_store(settings.database_path)
    await store.ensure_open()
    lease = settings.serve.lease_seconds if lease_seconds is None else lease_seconds
    # Sync flow bodies must not run on this event loop: they go to the task runner's pool.
    executor = default_task_runner().acquire()
    report = await recover_all(
        store, lease_seconds=lease, executor=executor, live_here=store.live_runs
    )
    # Suspended runs resumed since (and not served by a deployment's worker) continue too.
    await continue_resumed(store, executor, report)
    return report


def recover(lease_seconds: float | None = None) -> RecoveryReport:
    """Blocking form of ``arecover``: sync flow bodies run on this thread."""
    from millstream._engine.serve.recovery import recover_all as _recover_all
    from millstream._engine.settings import get_current_settings

    settings = get_current_settings()
    store = get_store(settings.database_path)
    lease = settings.serve.lease_seconds if lease_seconds is None else lease_seconds

    async def run(executor: object) -> RecoveryReport:
        await store.ensure_open()
        report = await _recover_all(
            store, lease_seconds=lease, executor=executor, live_here=store.live_runs
        )
        await continue_resumed(store, executor, report)
        return report

    return run_sync(run)


__all__ = ["RecoveryReport", "arecover", "recover"]
