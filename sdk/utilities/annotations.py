"""Argument annotations for task calls: ``unmapped``, ``allow_failure``, ``quote``."""

from millstream._engine.orchestrate.annotations import (
    BaseAnnotation,
    allow_failure,
    quote,
    unmapped,
)

__all__ = ["BaseAnnotation", "allow_failure", "quote", "unmapped"]
