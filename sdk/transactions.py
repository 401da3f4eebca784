"""Transactions (``prefect.transactions``): blocks whose staged values and task hooks commit or
roll back together."""

from millstream._engine.orchestrate.transactions import (
    AsyncTransaction,
    BaseTransaction,
    CommitMode,
    IsolationLevel,
    Transaction,
    TransactionState,
    atransaction,
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
