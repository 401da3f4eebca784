"""Argument annotations for task calls: ``unmapped``, ``allow_failure``, ``quote``."""

from engine.scheduler import BaseAnnotation, allow_failure, quote, unmapped

__all__ = ["BaseAnnotation", "allow_failure", "quote", "unmapped"]
