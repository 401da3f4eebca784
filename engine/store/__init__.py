"""The only database user: the write-behind writer, reads, migrations and the schema."""

from millstream._engine.store.sqlite import Store, close_all, get_store

__all__ = ["Store", "close_all", "get_store"]
