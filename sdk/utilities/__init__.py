"""Utility modules under Prefect's names."""

__all__: list[str] = []  # submodules only
