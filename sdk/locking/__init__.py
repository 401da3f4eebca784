"""Locks for SERIALIZABLE transactions (``prefect.locking``)."""

__all__: list[str] = []  # submodules only
