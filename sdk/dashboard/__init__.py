"""The dashboard: an ASGI app over the runs database, to mount or to serve alone.

``app.mount("/runs", millstream.dashboard.app())`` puts it inside a Starlette or FastAPI app;
``millstream dashboard [--host 127.0.0.1 --port 4200]`` serves it alone. Pages are rendered on
the server (Jinja2, autoescaped) with CSS and a little JavaScript of its own; it reads the same
database as the runs (``MILLSTREAM_DATABASE_PATH``). Needs the ``ui`` extra:
``pip install 'millstream[ui]'``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["app", "serve"]


def _require_ui() -> None:
    try:
        import jinja2  # noqa: F401
        import markdown_it  # noqa: F401
        import starlette  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"millstream.dashboard needs the 'ui' extra ({exc.name} is missing): "
            "pip install 'millstream[ui]'"
        ) from None


def app(*, token: str | None = None, allowed_hosts: Iterable[str] = ()) -> Any:
    """The dashboard as an ASGI app (Starlette) over the current database.

    ``token`` (default: ``MILLSTREAM_SERVE_TOKEN``) makes every request need it, as a bearer
    token or the cookie set by opening a page with ``?token=...``. Requests must name a
    loopback host or one of ``allowed_hosts`` (the names your app is reached by when it is
    mounted), and cross-origin posts are refused.
    """
    _require_ui()
    from millstream._engine.settings import get_current_settings
    from millstream.dashboard.routes import build

    settings = get_current_settings()
    return build(
        settings.database_path,
        token=token if token is not None else settings.serve.token,
        allowed_hosts=allowed_hosts,
    )


def serve(host: str = "127.0.0.1", port: int = 4200) -> None:
    """Serve the dashboard until interrupted; a non-loopback ``host`` needs a token."""
    _require_ui()
    try:
        import uvicorn
    except ImportError:
        raise ImportError(
            "millstream dashboard needs uvicorn (the 'ui' extra): pip install 'millstream[ui]'"
        ) from None
    from millstream._engine.settings import get_current_settings
    from millstream.dashboard.security import check_bind

    token = get_current_settings().serve.token
    check_bind(host, token)
    # Bound to every interface, the dashboard is reached by names it cannot know (the token,
    # which such a bind requires, keeps others out); otherwise by the address bound.
    wildcard = host in ("0.0.0.0", "::", "")
    asgi = app(token=token, allowed_hosts=["*"] if wildcard else [host])
    shown = f"[{host}]" if ":" in host else host  # an IPv6 address in a URL
    print(f"Millstream dashboard on http://{shown}:{port}/", flush=True)
    uvicorn.Server(uvicorn.Config(asgi, host=host, port=port, log_level="warning")).run()
