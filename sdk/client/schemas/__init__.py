"""Client schemas: filters, sorts and the objects reads return."""

from millstream.client.schemas import filters, objects, sorting

__all__ = ["filters", "objects", "sorting"]
