"""The dashboard's tests: a real uvicorn server over the test's database, in a thread."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

pytest.importorskip("jinja2")
pytest.importorskip("markdown_it")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """uvicorn serving an ASGI app on a free loopback port until stopped."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the dashboard server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def serve_app(millstream_home: Any) -> Iterator[Any]:
    """Start a server for an app (made inside the test, after its settings are in place)."""
    servers: list[Server] = []

    def start(app: Any) -> Server:
        server = Server(app).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__()


@pytest.fixture
def dashboard(serve_app: Any) -> Iterator[httpx.Client]:
    """An httpx client of a dashboard server over the test's database (cookies kept)."""
    from millstream.dashboard import app

    server = serve_app(app())
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def csrf_of(page: str) -> str:
    """The CSRF token in a page's forms."""
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def own_scripts_removed(html: str) -> str:
    """The page without the dashboard's own script tag (the only script it may hold)."""
    return re.sub(r'<script src="[^"]*/static/app\.js" defer></script>', "", html)
