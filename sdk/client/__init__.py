"""The client: ``get_client()`` reads runs, states, logs and variables from the database."""

from millstream.client.orchestration import PrefectClient, SyncPrefectClient, get_client

__all__ = ["PrefectClient", "SyncPrefectClient", "get_client"]
