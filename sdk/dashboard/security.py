"""Who may use the dashboard: a small ASGI middleware, reusable by any local HTTP API.

The rules (the same as the worker's HTTP API):

- Host: a request must name an allowed host (loopback names, the address bound, and any the
  app was given), so a page of another site that resolves its own name to 127.0.0.1 (DNS
  rebinding) is refused. Served on a wildcard address (0.0.0.0), which needs a token, any
  Host is admitted: the token is what keeps others out.
- Origin: a request that carries an ``Origin`` (or, for a form post, a ``Referer``) must come
  from the host it was sent to (or an allowed one); a cross-site page cannot post to the
  dashboard.
- Token: with a token set (``MILLSTREAM_SERVE_TOKEN``), every request needs
  ``Authorization: Bearer <token>`` or the ``millstream_token`` cookie; opening any page with
  ``?token=<token>`` once sets that cookie (HttpOnly, SameSite=Strict).
- Binding to anything but loopback without a token is refused (``check_bind``).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["LOOPBACK_HOSTS", "LocalAccessMiddleware", "TOKEN_COOKIE", "check_bind", "is_loopback"]


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TOKEN_COOKIE = "millstream_token"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine only."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token."""
    if not is_loopback(host) and not token:
        raise ValueError(
            f"Refusing to serve on {host!r} without a token: anyone who can reach it could "
            "cancel and delete runs. Set MILLSTREAM_SERVE_TOKEN, or bind to 127.0.0.1"
        )


def _host_name(value: str) -> str:
    """The host of a ``Host`` header or an origin, without the port, lowercased."""
    netloc = urlsplit(value).netloc if "://" in value else value
    if netloc.startswith("["):
        return netloc[: netloc.find("]") + 1].lower()
    return netloc.rsplit(":", 1)[0].lower() if netloc.count(":") == 1 else netloc.lower()


class LocalAccessMiddleware:
    """Refuses foreign hosts and origins, and requests without the token when one is set."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None = None,
        allowed_hosts: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.token = token or None
        self.allowed = LOOPBACK_HOSTS | {h.lower() for h in allowed_hosts}

    def _allowed(self, value: str) -> bool:
        return "*" in self.allowed or _host_name(value) in self.allowed

    def _same_site(self, value: str, host: str) -> bool:
        # An origin is ours when it names the host the request was sent to, or a host we
        # were told about ("*" admits any Host header, never any origin).
        name = _host_name(value)
        return name == _host_name(host) or (name in self.allowed and name != "*")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if not host or not self._allowed(host):
            await _refuse(send, 421, "This dashboard does not answer for this host")
            return
        origin = headers.get("origin")
        if origin is not None and (origin == "null" or not self._same_site(origin, host)):
            await _refuse(send, 403, "Cross-origin requests are refused")
            return
        unsafe = scope.get("method", "GET") not in ("GET", "HEAD", "OPTIONS")
        referer = headers.get("referer")
        if unsafe and origin is None and referer is not None and not self._same_site(referer, host):
            await _refuse(send, 403, "Cross-site form posts are refused")
            return
        if self.token is not None:
            given = self._query_token(scope)
            if given is not None and _same(given, self.token):
                await _set_cookie_and_redirect(send, scope, self.token)
                return
            if not self._has_token(headers):
                await _refuse(send, 401, "Missing or wrong token (Authorization: Bearer ...)")
                return
        await self.app(scope, receive, send)

    def _query_token(self, scope: Scope) -> str | None:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        values = query.get("token")
        return values[0] if values else None

    def _has_token(self, headers: dict[str, str]) -> bool:
        assert self.token is not None
        auth = headers.get("authorization", "")
        if auth.startswith("Bearer ") and _same(auth[7:], self.token):
            return True
        cookie: SimpleCookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:
            return False
        morsel = cookie.get(TOKEN_COOKIE)
        return morsel is not None and _same(morsel.value, self.token)


def _same(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode(), token.encode())


async def _refuse(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _set_cookie_and_redirect(send: Send, scope: Scope, token: str) -> None:
    # The token leaves the address bar (and the history) at once.
    # Starlette keeps the full path in "path" when the app is mounted (the prefix is also in
    # "root_path"); a bare ASGI server gives the path below its root_path.
    path = scope.get("path", "/") or "/"
    root = scope.get("root_path", "")
    location = path if path.startswith(root) else root + path
    cookie = f"{TOKEN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [
                (b"location", location.encode()),
                (b"set-cookie", cookie.encode()),
                (b"content-length", b"0"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})
