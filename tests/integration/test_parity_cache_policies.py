"""Cache policies as in Prefect 3.9.1: algebra, defaults, configure(), stable keys."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from millstream import flow, task
from millstream.cache_policies import (
    DEFAULT,
    INPUTS,
    NO_CACHE,
    NONE,
    RUN_ID,
    TASK_SOURCE,
    CompoundCachePolicy,
    Inputs,
)
from millstream.exceptions import NotSupportedError
from millstream.locking.memory import MemoryLockManager
from millstream.settings import PREFECT_RESULTS_PERSIST_BY_DEFAULT, temporary_settings


def test_algebra_flattens_merges_inputs_and_subtracts_names():
    assert (INPUTS - "x" - "y").exclude == ("x", "y")
    assert (TASK_SOURCE + INPUTS + INPUTS).policies == (TASK_SOURCE, INPUTS)
    nested = CompoundCachePolicy(policies=[TASK_SOURCE, CompoundCachePolicy([RUN_ID, INPUTS])])
    assert nested.policies == DEFAULT.policies
    merged = CompoundCachePolicy([Inputs(exclude=["b"]), TASK_SOURCE, Inputs(exclude=["a"])])
    assert merged.policies == (TASK_SOURCE, Inputs(exclude=["a", "b"]))
    assert (DEFAULT - "x").policies[-1] == Inputs(exclude=["x"])
    assert (TASK_SOURCE + RUN_ID) - "x" == TASK_SOURCE + RUN_ID
    assert NONE + INPUTS == INPUTS and INPUTS + NO_CACHE == INPUTS
    with pytest.raises(TypeError, match="Can only subtract strings from key policies"):
        INPUTS - 1  # type: ignore[operator]


def test_configure_keeps_the_rest_and_sums_must_agree():
    locks = MemoryLockManager()
    configured = INPUTS.configure(isolation_level="SERIALIZABLE", lock_manager=locks)
    assert configured.exclude == () and configured.lock_manager is locks
    assert (configured + TASK_SOURCE).isolation_level == "SERIALIZABLE"
    assert (configured - "x").isolation_level == "SERIALIZABLE"
    with pytest.raises(ValueError, match="different isolation levels"):
        configured + TASK_SOURCE.configure(isolation_level="READ_COMMITTED")
    with pytest.raises(NotSupportedError, match="key_storage"):
        INPUTS.configure(key_storage="/tmp/somewhere")


def test_unset_policy_caches_by_default_only_when_results_persist():
    @task
    def t(x: int) -> int:
        return x

    @flow
    def f() -> list[str]:
        return [t(1, return_state=True).name, t(1, return_state=True).name]

    @flow(persist_result=True)
    def persisting() -> list[str]:
        return [t(1, return_state=True).name, t(1, return_state=True).name]

    assert f() == ["Completed", "Completed"]
    with temporary_settings({PREFECT_RESULTS_PERSIST_BY_DEFAULT: True}):
        assert f() == ["Completed", "Cached"]
    assert persisting() == ["Completed", "Cached"]

    @task(cache_policy=NO_CACHE)
    def never(x: int) -> int:
        return x

    @flow(persist_result=True)
    def no_cache() -> list[str]:
        return [never(1, return_state=True).name, never(1, return_state=True).name]

    assert no_cache() == ["Completed", "Completed"]


def test_unhashable_inputs_under_the_unset_policy_just_do_not_cache():
    lock = threading.Lock()

    @task
    def t(x: object) -> int:
        return 1

    @flow(persist_result=True)
    def f() -> list[str]:
        return [t(lock, return_state=True).name, t(lock, return_state=True).name]

    assert f() == ["Completed", "Completed"]


def test_serializable_policy_runs_one_at_a_time_and_the_second_is_cached():
    policy = INPUTS.configure(isolation_level="SERIALIZABLE", lock_manager=MemoryLockManager())
    inside = threading.Event()
    release = threading.Event()
    calls: list[int] = []

    @task(cache_policy=policy, persist_result=True)
    def slow(x: int) -> int:
        calls.append(x)
        inside.set()
        release.wait(10)
        return x * 10

    states: list = []
    first = threading.Thread(target=lambda: states.append(slow(1, return_state=True)))
    first.start()
    assert inside.wait(10)
    second = threading.Thread(target=lambda: states.append(slow(1, return_state=True)))
    second.start()
    # The second run waits on the key's lock; release the first.
    release.set()
    first.join(10)
    second.join(10)
    assert calls == [1]
    assert sorted(s.name for s in states) == ["Cached", "Completed"]
    assert all(s.result() == 10 for s in states)


def test_serializable_without_a_lock_manager_fails_the_run_saying_why():
    @task(cache_policy=INPUTS.configure(isolation_level="SERIALIZABLE"), persist_result=True)
    def t(x: int) -> int:
        return x

    state = t(1, return_state=True)
    assert state.is_failed() and "SERIALIZABLE is not supported" in state.message


@pytest.mark.slow
def test_keys_are_the_same_in_another_process(tmp_path: Path):
    module = tmp_path / "keyed_p10b.py"
    module.write_text(
        textwrap.dedent(
            """
            from millstream import task
            from millstream.cache_policies import INPUTS, TASK_SOURCE

            @task
            def keyed(x, y):
                return x

            class Ctx:
                task = keyed

            def key():
                return (TASK_SOURCE + INPUTS).compute_key(Ctx(), {"x": 1, "y": [2, "a"]}, {})
            """
        )
    )
    code = "import keyed_p10b; print(keyed_p10b.key())"
    keys = {
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
        for _ in range(2)
    }
    assert len(keys) == 1 and len(next(iter(keys))) >= 32


def test_keys_do_not_change_between_versions():
    # Recorded with this release: a different value means every stored cache entry would be
    # missed after an upgrade. Change only with a note in the changelog.
    from millstream.cache_policies import FLOW_PARAMETERS

    inputs = {"x": 1, "y": [2, "a"], "z": {"k": (1.5, None)}}
    assert INPUTS.compute_key(None, inputs, {}) == "85d0cbb722889bc6488a31b7515cb602"
    assert FLOW_PARAMETERS.compute_key(None, {}, {"a": "b"}) == "69de7e6bdd26c31112d2520b5685fe80"
