"""Transactions (``prefect.transactions``): blocks whose staged values and task hooks commit or
roll back together."""

from millstream._engine.orchestrate.async_transactions import AsyncTransaction, atransaction
from millstream._engine.orchestrate.transactions import (
    BaseTransaction,
    CommitMode,
    IsolationLevel,
    Transaction,
    TransactionState,
    get_transaction,
    transaction,
)

__all__ = [
    "AsyncTransaction",
    "BaseTransaction",
    "CommitMode",
    "IsolationLevel",
    "Transaction",
    "TransactionState",
    "atransaction",
    "get_transaction",
    "transaction",
]
