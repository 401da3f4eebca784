"""Flow control: concurrency and rate limits whose slots are leases in the database.

A slot is taken in one synchronous transaction (never write-behind), so at most ``limit``
holders exist across threads, processes and hosts sharing the store. A holder renews its lease
while it holds it; one that dies stops renewing and its slots come back when the lease
expires. A release wakes the waiters of the same process at once (``waiters``); waiters of
other processes look again every ``limits.poll_seconds``.
"""

from millstream._engine.limits.slots import (
    Grant,
    acquire,
    acquire_blocking,
    release,
    release_blocking,
)

__all__ = ["Grant", "acquire", "acquire_blocking", "release", "release_blocking"]
