"""``StateGroup``, ``is_state_iterable`` and the named Pending states of ``prefect.states``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any, TypeGuard

from millstream._engine.model.states import Pending, State, StateType
from millstream._engine.orchestrate.annotations import BaseAnnotation

__all__ = ["InfrastructurePending", "StateGroup", "Submitting", "is_state_iterable"]


def is_state_iterable(obj: Any) -> TypeGuard[Iterable[State]]:
    """Whether ``obj`` is a non-empty list, set or tuple of states only (other iterables,
    and annotations such as ``quote``, are not)."""
    if isinstance(obj, BaseAnnotation) or not isinstance(obj, list | set | tuple) or not obj:
        return False
    return all(isinstance(item, State) for item in obj)


class StateGroup:
    """Counts over several states: how many failed, completed, are final, ..."""

    def __init__(self, states: list[State]) -> None:
        self.states = states
        self.type_counts: Counter[StateType] = Counter(state.type for state in states)
        self.total_count = len(states)
        self.cancelled_count = self.type_counts[StateType.CANCELLED]
        self.final_count = sum(state.is_final() for state in states)
        self.not_final_count = self.total_count - self.final_count
        self.paused_count = self.type_counts[StateType.PAUSED]

    @property
    def fail_count(self) -> int:
        """Failed and crashed states."""
        return self.type_counts[StateType.FAILED] + self.type_counts[StateType.CRASHED]

    def all_completed(self) -> bool:
        """Whether every state is Completed."""
        return self.type_counts[StateType.COMPLETED] == self.total_count

    def any_cancelled(self) -> bool:
        """Whether a state is Cancelled."""
        return self.cancelled_count > 0

    def any_failed(self) -> bool:
        """Whether a state is Failed or Crashed."""
        return self.fail_count > 0

    def any_paused(self) -> bool:
        """Whether a state is Paused."""
        return self.paused_count > 0

    def all_final(self) -> bool:
        """Whether every state is final."""
        return self.final_count == self.total_count

    def counts_message(self) -> str:
        """``total=2, 'COMPLETED'=1, 'FAILED'=1`` (types in order of first appearance)."""
        parts = [f"total={self.total_count}"]
        if self.not_final_count:
            parts.append(f"not_final={self.not_final_count}")
        parts += [f"{kind.value!r}={count}" for kind, count in self.type_counts.items() if count]
        return ", ".join(parts)

    def __repr__(self) -> str:
        return f"StateGroup<{self.counts_message()}>"


def Submitting(**kwargs: Any) -> State:  # Prefect's constructor name
    """A Pending state named "Submitting"."""
    return Pending(name="Submitting", **kwargs)


def InfrastructurePending(**kwargs: Any) -> State:  # Prefect's constructor name
    """A Pending state named "InfrastructurePending"."""
    return Pending(name="InfrastructurePending", **kwargs)
