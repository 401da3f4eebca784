"""What the client takes to create or change objects (Prefect's ``schemas.actions``)."""

from millstream.client.schemas.concurrency import (
    ConcurrencyLimitCreate,
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
)

__all__ = [
    "ConcurrencyLimitCreate",
    "GlobalConcurrencyLimitCreate",
    "GlobalConcurrencyLimitUpdate",
]
