"""What the result serializers share: the ``Serializer`` protocol and type names for errors."""

from __future__ import annotations

from typing import Any, Protocol


class Serializer(Protocol):
    """Turns values into bytes and back; ``type`` names it in stored result envelopes."""

    @property
    def type(self) -> str:
        """The name written next to each stored result ("msgpack", "json", "pickle", ...)."""
        ...

    def dumps(self, obj: Any) -> bytes:
        """Encode ``obj``; raise ``SerializationError`` naming its type when it cannot."""
        ...

    def loads(self, data: bytes) -> Any:
        """Decode bytes written by ``dumps``."""
        ...


def _type_name(cls: type) -> str:
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )
