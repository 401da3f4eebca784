"""Helpers for a real worker serving the HTTP API, shared by these tests and
benchmarks/http_triggers.py (a module of its own so that both can import it by name)."""

from __future__ import annotations

import socket
import subprocess
import time

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(
    base: str, proc: subprocess.Popen[bytes] | subprocess.Popen[str], deadline: float
) -> bool:
    """Poll ``{base}/health`` until it answers 200: True then; False once the ``deadline``
    (a ``time.monotonic()`` value) has passed or the worker process has ended."""
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            return False
        time.sleep(0.05)
