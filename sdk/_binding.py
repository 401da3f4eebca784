"""What flows and tasks share as decorators that may stand over methods: ``obj.method`` binds
``obj`` as the first argument, as a plain function's ``__get__`` does."""

from __future__ import annotations

import copy
from typing import Any, ClassVar

__all__ = ["UNBOUND", "MethodBinding"]

# No instance bound (a decorator over a plain function, or a method read from its class).
UNBOUND: Any = object()


class MethodBinding:
    """The instance binding of ``Flow`` and ``Task`` (``_bound_self`` is set in their
    ``__init__``), and their ``repr``."""

    _kind: ClassVar[str]
    name: str
    fn: Any
    _bound_self: Any

    def _with_self(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        """``args`` with the bound instance first, when there is one."""
        return args if self._bound_self is UNBOUND else (self._bound_self, *args)

    def __repr__(self) -> str:
        return f"{self._kind}(name={self.name!r}, fn={getattr(self.fn, '__qualname__', self.name)})"

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        # ``obj.method`` is this object with ``obj`` bound as its first argument, kept among the
        # parameters (so run names like "{self.x}" and cache keys see it, as in Prefect). The
        # copy shares the spec: binding costs no rebuild.
        if instance is None:
            return self
        bound = copy.copy(self)
        bound._bound_self = instance
        return bound
