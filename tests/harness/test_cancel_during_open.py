"""A caller cancelled while the database is being opened does not cancel the opening for
everyone: the writer thread survives and the next caller gets an open store."""

from __future__ import annotations

import asyncio

from millstream._engine.store import close_store, get_store


def test_cancelling_a_caller_waiting_for_the_open_leaves_the_store_usable(tmp_path):
    path = tmp_path / "fresh.db"
    store = get_store(path)

    async def main() -> None:
        waiter = asyncio.ensure_future(store.ensure_open())
        await asyncio.sleep(0)  # the open has started on the writer thread
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        await asyncio.wait_for(store.ensure_open(), 30)
        await store.flush()

    try:
        asyncio.run(main())
        assert store.start().exception() is None
        assert store._thread is not None and store._thread.is_alive()
    finally:
        close_store(path)
