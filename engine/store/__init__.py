"""The only database user: the write-behind writer, reads, migrations and the schema."""

from millstream._engine.store.core import (
    HOSTNAME,
    Store,
    close_all,
    close_store,
    get_store,
    open_store_paths,
)
from millstream._engine.store.liveness import watch_cancellations
from millstream._engine.store.migrations import SCHEMA_VERSION

__all__ = [
    "HOSTNAME",
    "SCHEMA_VERSION",
    "Store",
    "close_all",
    "close_store",
    "get_store",
    "open_store_paths",
    "watch_cancellations",
]
