"""Global concurrency and rate limits (Prefect's ``prefect.concurrency``): ``sync`` and
``asyncio`` hold the context managers; the limits are created with the client or the CLI."""

__all__: list[str] = []  # submodules only
