"""How the blocking client gets its methods: each is the twin of the async client's method."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

from millstream._sync import dual

__all__ = ["blocking"]

P = ParamSpec("P")
T = TypeVar("T")


def blocking(
    method: Callable[Concatenate[Any, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[Any, P], T]:
    """The blocking twin of an async client method (derived with ``dual``), run on the sync
    client's own async client (``self._client``)."""
    twin = dual(method)

    @functools.wraps(twin)
    def run_blocking(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return twin(self._client, *args, **kwargs)

    return run_blocking
