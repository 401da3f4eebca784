"""A guard for the local HTTP servers (the worker's API, the dashboard): an ASGI middleware.

``RequestGuard(app, ...)`` wraps any ASGI app (Starlette's ``Middleware(RequestGuard, ...)``
works too) and answers, before the app sees the request:

- 403 when the ``Host`` header names a host not served here (DNS rebinding: a page on
  ``evil.example`` whose name resolves to 127.0.0.1 sends ``Host: evil.example``), or when an
  ``Origin`` header is not this server's own origin (a cross-site ``fetch``/form POST from a
  browser);
- 401 when a token is set and ``Authorization: Bearer <token>`` is missing or wrong (compared in
  constant time), except on the public paths (``/health``);
- 415 when a request with a body does not say ``Content-Type: application/json``
  (``json_only``);
- 413 when the body is larger than ``max_body_bytes``: at once from ``Content-Length``, and for
  a chunked body as soon as the bytes read pass the cap (the rest is never read).

Only the standard library is used here; the responses are plain JSON ``{"detail": ...}``.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

__all__ = ["LOOPBACK_HOSTS", "RequestGuard", "is_loopback"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` serves this machine only."""
    host = host.strip("[]").lower()
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def _hostname(value: str) -> str:
    # "127.0.0.1:8080" -> "127.0.0.1"; "[::1]:80" -> "::1"; the name alone, lower-cased.
    try:
        return (urlsplit(f"//{value}").hostname or "").lower()
    except ValueError:
        return ""


class _BodyTooLarge(Exception):
    pass


class RequestGuard:
    """ASGI middleware: Host/Origin checks, the bearer token, JSON-only bodies, a body cap.

    ``allowed_hosts``: host names accepted in ``Host`` (``"*"`` accepts any; the loopback names
    are always accepted). ``token``: the bearer token, or None for none. ``public_paths``:
    paths served without the token. ``max_body_bytes``: the body cap, or None. ``json_only``:
    bodies must be ``application/json``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_hosts: Iterable[str] = (),
        token: str | None = None,
        public_paths: Iterable[str] = ("/health",),
        max_body_bytes: int | None = None,
        json_only: bool = False,
    ) -> None:
        self.app = app
        hosts = {h.strip("[]").lower() for h in allowed_hosts}
        self.any_host = "*" in hosts
        self.allowed_hosts = frozenset(hosts | LOOPBACK_HOSTS)
        self.expected = f"Bearer {token}".encode() if token else None
        self.public_paths = frozenset(public_paths)
        self.max_body_bytes = max_body_bytes
        self.json_only = json_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            status, detail, extra = refusal
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
            else:
                await _respond(send, status, detail, extra)
            return
        if scope["type"] == "http" and self.max_body_bytes is not None:
            await self._capped(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _refusal(
        self, scope: Scope, headers: dict[str, str]
    ) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        host = headers.get("host", "")
        if not self.any_host and _hostname(host) not in self.allowed_hosts:
            return 403, f"Host {host!r} is not served here", []
        origin = headers.get("origin")
        if origin is not None:
            parts = urlsplit(origin) if origin != "null" else None
            if parts is None or parts.netloc.lower() != host.lower():
                return 403, f"cross-origin requests are refused (Origin {origin!r})", []
        if self.expected is not None and scope.get("path") not in self.public_paths:
            given = headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, self.expected):
                return 401, "missing or wrong bearer token", [(b"www-authenticate", b"Bearer")]
        if scope["type"] != "http" or scope.get("method") not in _BODY_METHODS:
            return None
        length = headers.get("content-length")
        has_body = (length not in (None, "0")) or "transfer-encoding" in headers
        if self.json_only and has_body:
            media = headers.get("content-type", "").split(";")[0].strip().lower()
            if media != "application/json":
                shown = media or "none"
                return 415, f"the body must be application/json (Content-Type: {shown})", []
        if self.max_body_bytes is not None and length is not None:
            try:
                too_large = int(length) > self.max_body_bytes
            except ValueError:
                return 400, f"bad Content-Length {length!r}", []
            if too_large:
                return 413, f"the body is larger than {self.max_body_bytes} bytes", []
        return None

    async def _capped(self, scope: Scope, receive: Receive, send: Send) -> None:
        cap = self.max_body_bytes
        assert cap is not None
        seen = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    raise _BodyTooLarge
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except _BodyTooLarge:
            if started:
                raise
            await _respond(send, 413, f"the body is larger than {cap} bytes", [])


async def _respond(send: Send, status: int, detail: str, extra: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
