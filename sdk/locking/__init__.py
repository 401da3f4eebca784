"""Locks for SERIALIZABLE transactions (``prefect.locking``)."""
