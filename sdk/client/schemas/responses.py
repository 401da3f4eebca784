"""What the client's state-setting methods return, under Prefect's names."""

from __future__ import annotations

import enum

import msgspec

from millstream._engine.model.states import State
from millstream.client.schemas.concurrency import GlobalConcurrencyLimitResponse


class SetStateStatus(enum.StrEnum):
    """Whether a proposed state was taken."""

    ACCEPT = "ACCEPT"
    REJECT = "REJECT"
    ABORT = "ABORT"
    WAIT = "WAIT"


class StateAcceptDetails(msgspec.Struct, kw_only=True):
    """Details of an accepted state."""

    type: str = "accept_details"


class StateRejectDetails(msgspec.Struct, kw_only=True):
    """Details of a rejected state: why."""

    type: str = "reject_details"
    reason: str | None = None


class StateAbortDetails(msgspec.Struct, kw_only=True):
    """Details of an aborted transition: why."""

    type: str = "abort_details"
    reason: str | None = None


class OrchestrationResult(msgspec.Struct, kw_only=True):
    """The outcome of ``client.set_flow_run_state``: the state now recorded and the status."""

    state: State | None
    status: SetStateStatus
    details: StateAcceptDetails | StateRejectDetails | StateAbortDetails = msgspec.field(
        default_factory=StateAcceptDetails
    )


__all__ = [
    "GlobalConcurrencyLimitResponse",
    "OrchestrationResult",
    "SetStateStatus",
    "StateAbortDetails",
    "StateAcceptDetails",
    "StateRejectDetails",
]
