"""Private loops of sync callers skip zero-timeout polls only when nothing but their wake-up pipe
is registered, and still see I/O readiness once user code registers file descriptors."""

from __future__ import annotations

import asyncio
import selectors
import socket

from millstream._engine.bridge.loops import _new_private_loop, _ReadySelector


def test_a_zero_timeout_poll_is_skipped_with_only_one_descriptor():
    selector = _ReadySelector()
    a, b = socket.socketpair()
    try:
        selector.register(a, selectors.EVENT_READ)
        b.send(b"x")
        assert selector.select(0) == []  # the loop's ready queue already holds what matters
        assert [key.fileobj for key, _ in selector.select(1)] == [a]  # a real wait polls
    finally:
        selector.close()
        a.close()
        b.close()


def test_user_io_on_a_private_loop_is_still_seen():
    loop = _new_private_loop()
    a, b = socket.socketpair()
    a.setblocking(False)

    async def echo() -> bytes:
        b.send(b"ping")
        return await loop.sock_recv(a, 4)

    try:
        assert loop.run_until_complete(asyncio.wait_for(echo(), 5)) == b"ping"
    finally:
        loop.close()
        a.close()
        b.close()
