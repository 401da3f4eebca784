"""Shapes the client returns that are not stored objects (Prefect's ``schemas.responses``)."""

from millstream.client.schemas.concurrency import GlobalConcurrencyLimitResponse

__all__ = ["GlobalConcurrencyLimitResponse"]
