"""Annotations on task arguments: ``unmapped``, ``allow_failure``, ``quote``, ``opaque``."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class BaseAnnotation(Generic[T]):
    """Wraps a task argument to change how the engine treats it."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def unwrap(self) -> T:
        """The wrapped value."""
        return self.value

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, BaseAnnotation)
            and type(self) is type(other)
            and (self.value == other.value)
        )

    def __hash__(self) -> int:
        return hash((type(self), id(self.value)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value!r})"


class unmapped(BaseAnnotation[T]):
    """A ``Task.map`` argument passed whole to every mapped run instead of being iterated."""

    def __getitem__(self, _: object) -> T:
        return self.value


class allow_failure(BaseAnnotation[T]):
    """An upstream future whose failure does not block the downstream task; the task
    receives the upstream exception in place of its result."""


class quote(BaseAnnotation[T]):
    """An argument passed as is: not inspected for futures (``map`` looks through it to find
    what to iterate and quotes each element, as Prefect does)."""

    def unquote(self) -> T:
        """The wrapped value."""
        return self.value


class opaque(BaseAnnotation[T]):
    """An argument whose future (or state) is resolved to its result, but whose contents are
    not searched for further futures: cheap for large collections."""
