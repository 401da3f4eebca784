"""Cancelling one caller while the database opens must not break the store for the others
(limits, queues and runs of the process all share it)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from millstream._engine.store import get_store


def test_a_caller_cancelled_while_the_store_opens_leaves_it_usable(tmp_path: Path) -> None:
    store = get_store(tmp_path / "open.db")

    async def main() -> None:
        waiter = asyncio.ensure_future(store.ensure_open())
        await asyncio.sleep(0)
        waiter.cancel()
        try:
            await waiter
        except asyncio.CancelledError:
            pass
        await asyncio.wait_for(store.ensure_open(), 30)
        await store.ping()

    asyncio.run(main())
