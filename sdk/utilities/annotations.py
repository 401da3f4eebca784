"""Argument annotations for task calls: ``unmapped``, ``allow_failure``, ``quote``, ``opaque``."""

from millstream._engine.orchestrate.annotations import (
    BaseAnnotation,
    allow_failure,
    opaque,
    quote,
    unmapped,
)

__all__ = ["BaseAnnotation", "NotSet", "allow_failure", "opaque", "quote", "unmapped"]


class NotSet:
    """Stands for "no value given", where None is a value (Prefect's sentinel class)."""
