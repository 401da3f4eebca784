"""Callables as tasks and Task.map's argument rules, as Prefect 3.9.1 has them (each
expectation first observed on prefect==3.9.1)."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from millstream import allow_failure, flow, quote, task, unmapped
from millstream.exceptions import MappingLengthMismatch, MappingMissingIterable


class Adder:
    def __init__(self, n: int) -> None:
        self.n = n

    def __call__(self, x: int) -> int:
        return x + self.n


def add3(a: int, b: int, c: int) -> int:
    return a + b + c


def test_callable_objects_and_partials_are_tasks():
    # prefect 3.9.1: names 'Adder' and 'partial'; (6, [6, 7]) and (6, [4, 5]); a lambda is
    # named '<lambda>'.
    adder = task(Adder(5))
    partial = task(functools.partial(add3, 1, 2))
    assert (adder.name, partial.name, task(lambda x: x).name) == ("Adder", "partial", "<lambda>")

    @flow
    def uses() -> tuple[Any, ...]:
        return (
            adder(1),
            [f.result() for f in adder.map([1, 2])],
            partial(3),
            [f.result() for f in partial.map([1, 2])],
        )

    assert uses() == (6, [6, 7], 6, [4, 5])


@task
def star(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, kwargs


@task
def ident(x: Any) -> Any:
    return x


@task
def with_default(x: int, extra: list[int] = [7, 8, 9]) -> tuple[int, list[int]]:  # noqa: B006
    return x, extra


def test_map_over_kwargs_states_annotations_and_defaults():
    # prefect 3.9.1: **kwargs entries map like named parameters; *args is one iterable (its
    # tuple); a State given whole maps over its result; allow_failure([...]) and quote([...])
    # map over the list; defaults are not mapped over.
    @flow
    def mapping() -> dict[str, Any]:
        listed = ident([1, 2, 3], return_state=True)
        return {
            "kwargs": [f.result() for f in star.map(k=[3, 4])],
            "state": [f.result() for f in ident.map(listed)],
            "allow_failure": [f.result() for f in ident.map(allow_failure([1, 2]))],
            "quote": [f.result() for f in ident.map(quote([1, 2]))],
            "defaults": [f.result() for f in with_default.map([1, 2])],
            "future": [f.result() for f in ident.map(ident.submit([4, 5]))],
            "unmapped": [f.result() for f in with_default.map([1], unmapped([0]))],
        }

    assert mapping() == {
        "kwargs": [((), {"k": 3}), ((), {"k": 4})],
        "state": [1, 2, 3],
        "allow_failure": [1, 2],
        "quote": [1, 2],
        "defaults": [(1, [7, 8, 9]), (2, [7, 8, 9])],
        "future": [4, 5],
        "unmapped": [(1, [0])],
    }


def test_map_errors_worded_as_prefect():
    # prefect 3.9.1: star.map([1, 2], k=[3, 4]) -> lengths {'args': 1, 'k': 2}; no iterables
    # -> "No iterable parameters were received. ... Parameters: {'x': 1}".
    @flow
    def mismatched() -> None:
        star.map([1, 2], k=[3, 4])

    @flow
    def nothing_to_map() -> None:
        ident.map(1)

    with pytest.raises(MappingLengthMismatch) as mismatch:
        mismatched()
    assert str(mismatch.value) == (
        "Received iterable parameters with different lengths. Parameters for map must all be "
        "the same length. Got lengths: {'args': 1, 'k': 2}"
    )
    with pytest.raises(MappingMissingIterable) as missing:
        nothing_to_map()
    assert str(missing.value) == (
        "No iterable parameters were received. Parameters for map must include at least one "
        "iterable. Parameters: {'x': 1}"
    )


def test_submit_and_map_outside_a_flow_say_so_as_prefect():
    with pytest.raises(RuntimeError, match="Unable to determine task runner to use for submission"):
        ident.submit(1)
    with pytest.raises(RuntimeError, match="Unable to determine task runner to use for mapped"):
        ident.map([1])


def test_a_persisted_subflow_is_not_run_again_when_its_parent_retries():
    # prefect 3.9.1: with persist_result=True on the child, a retried parent reuses the
    # completed child run (child ran once); without a persisted result it runs again.
    calls = {"kept": 0, "plain": 0, "parent": 0}

    @flow(persist_result=True)
    def kept() -> str:
        calls["kept"] += 1
        return "k"

    @flow
    def plain() -> str:
        calls["plain"] += 1
        return "p"

    @flow(retries=1)
    def parent() -> tuple[str, str]:
        calls["parent"] += 1
        values = kept(), plain()
        if calls["parent"] == 1:
            raise RuntimeError("first attempt fails")
        return values

    assert parent() == ("k", "p")
    assert calls == {"kept": 1, "plain": 2, "parent": 2}
