"""Cache policies: Prefect 3's keys and algebra, deterministic keys, clear failures."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import re
import subprocess
import sys
import textwrap
import threading
import typing
import uuid
from types import SimpleNamespace

import pytest

from millstream._engine.exceptions import NotSupportedError, UnhashableInputError
from millstream._engine.results import cache_policies as cp
from millstream._engine.results.cache_policies import (
    DEFAULT,
    FLOW_PARAMETERS,
    INPUTS,
    NO_CACHE,
    NONE,
    RUN_ID,
    TASK_SOURCE,
    CacheKeyFnPolicy,
    CachePolicy,
    CompoundCachePolicy,
    FlowParameters,
    Inputs,
    RunId,
    TaskSource,
    source_fingerprint,
    task_input_hash,
)

HEX32 = re.compile(r"[0-9a-f]{32}")
FLOW_RUN = uuid.UUID(int=1)
TASK_RUN = uuid.UUID(int=2)


def double(x: int) -> int:
    return 2 * x


def triple(x: int) -> int:
    return 3 * x


def ctx(
    fn: typing.Any = double, *, flow_run_id: uuid.UUID | None = FLOW_RUN, task_key: str = "k"
) -> SimpleNamespace:
    return SimpleNamespace(
        task=SimpleNamespace(fn=fn, task_key=task_key, name=getattr(fn, "__name__", "t")),
        task_run=SimpleNamespace(id=TASK_RUN, flow_run_id=flow_run_id, task_key=task_key),
    )


# --- single policies ------------------------------------------------------------------------


def test_inputs_hash_the_inputs():
    key = INPUTS.compute_key(ctx(), {"x": 1, "y": [2]}, {})
    assert key is not None and HEX32.fullmatch(key)
    assert INPUTS.compute_key(ctx(), {"y": [2], "x": 1}, {}) == key
    assert INPUTS.compute_key(ctx(), {"x": 2, "y": [2]}, {}) != key
    assert INPUTS.compute_key(None, {"x": 1, "y": [2]}, {}) == key  # no context needed
    assert INPUTS.compute_key(ctx(), {}, {}) is None  # no inputs: nothing to cache on


def test_inputs_exclude_and_subtraction():
    policy = INPUTS - "noise"
    assert policy == Inputs(exclude=["noise"])
    assert policy.exclude == ("noise",)
    assert INPUTS.exclude == ()  # the shared INPUTS is not changed
    assert policy.compute_key(ctx(), {"x": 1, "noise": 1}, {}) == policy.compute_key(
        ctx(), {"x": 1, "noise": 2}, {}
    )
    assert (policy - "noise") == policy
    assert (policy - "other").exclude == ("noise", "other")
    # Everything excluded still gives a key: a constant one.
    assert policy.compute_key(ctx(), {"noise": 1}, {}) == policy.compute_key(
        ctx(), {"noise": 2}, {}
    )


def test_inputs_refuse_bad_exclusions():
    with pytest.raises(TypeError, match="'abc'"):
        Inputs(exclude="abc")
    with pytest.raises(TypeError, match="1"):
        Inputs(exclude=[1])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="Only parameter names"):
        INPUTS - 1  # type: ignore[operator]


def test_unhashable_input_names_the_parameter_and_exclusion_fixes_it():
    inputs = {"x": 1, "lock": threading.Lock()}
    with pytest.raises(UnhashableInputError, match=r"parameter 'lock' .*INPUTS - 'lock'"):
        INPUTS.compute_key(ctx(), inputs, {})
    assert (INPUTS - "lock").compute_key(ctx(), inputs, {}) is not None
    with pytest.raises(UnhashableInputError, match="'lock'"):
        DEFAULT.compute_key(ctx(), inputs, {})
    assert (DEFAULT - "lock").compute_key(ctx(), inputs, {}) is not None


def test_task_source_hashes_the_function_source():
    key = TASK_SOURCE.compute_key(ctx(double), {}, {})
    assert key is not None and HEX32.fullmatch(key)
    assert TASK_SOURCE.compute_key(ctx(double), {"x": 5}, {"a": 1}) == key
    assert TASK_SOURCE.compute_key(ctx(triple), {}, {}) != key
    assert TASK_SOURCE.compute_key(None, {}, {}) is None
    assert TASK_SOURCE.compute_key(SimpleNamespace(task=None, spec=None), {}, {}) is None
    # Engine-level contexts without a Task object fall back to the spec's function.
    spec_only = SimpleNamespace(task=None, spec=SimpleNamespace(fn=double))
    assert TASK_SOURCE.compute_key(spec_only, {}, {}) == key


def test_source_fingerprint_follows_source_not_identity():
    namespace: dict[str, typing.Any] = {}
    source = "def f(x):\n    return x + 1\n"
    exec(compile(source, "<generated>", "exec"), namespace)  # no source file: code is hashed
    first = namespace["f"]
    exec(compile(source, "<generated>", "exec"), namespace)
    assert namespace["f"] is not first
    assert source_fingerprint(namespace["f"]) == source_fingerprint(first)
    exec(compile(source.replace("1", "2"), "<generated>", "exec"), namespace)
    assert source_fingerprint(namespace["f"]) != source_fingerprint(first)

    class Scaler:
        def __call__(self, x: int) -> int:
            return x

        def method(self, x: int) -> int:
            return x

    assert source_fingerprint(Scaler()) == source_fingerprint(Scaler())
    assert source_fingerprint(Scaler().method) == source_fingerprint(Scaler.method)
    assert source_fingerprint(len) == source_fingerprint(len)
    assert source_fingerprint(len) != source_fingerprint(abs)
    assert source_fingerprint(functools.partial(double, 1)) != source_fingerprint(
        functools.partial(double, 2)
    )

    @functools.wraps(double)
    def wrapper(x: int) -> int:
        return double(x)

    assert source_fingerprint(wrapper) == source_fingerprint(double)  # getsource unwraps


def test_source_is_read_once_per_function(monkeypatch):
    def fresh(x: int) -> int:
        return x

    calls = []
    real = inspect.getsource

    def counting(obj: typing.Any) -> str:
        calls.append(obj)
        return real(obj)

    monkeypatch.setattr(cp.inspect, "getsource", counting)
    first = source_fingerprint(fresh)
    assert source_fingerprint(fresh) == first
    assert len(calls) == 1


def test_run_id_is_the_flow_run_or_else_the_task_run():
    assert RUN_ID.compute_key(ctx(), {}, {}) == str(FLOW_RUN)
    assert RUN_ID.compute_key(ctx(flow_run_id=None), {}, {}) == str(TASK_RUN)
    assert RUN_ID.compute_key(None, {}, {}) is None


def test_flow_parameters():
    key = FLOW_PARAMETERS.compute_key(ctx(), {"x": 1}, {"a": 1, "b": {2}})
    assert key is not None and HEX32.fullmatch(key)
    assert FLOW_PARAMETERS.compute_key(ctx(), {"x": 2}, {"b": {2}, "a": 1}) == key
    assert FLOW_PARAMETERS.compute_key(ctx(), {}, {"a": 2, "b": {2}}) != key
    assert FLOW_PARAMETERS.compute_key(ctx(), {"x": 1}, {}) is None
    with pytest.raises(UnhashableInputError, match="flow parameter 'lock'"):
        FLOW_PARAMETERS.compute_key(ctx(), {}, {"lock": threading.Lock()})


def test_none_and_no_cache_give_no_key_and_differ_on_lookup():
    for policy in (NONE, NO_CACHE):
        assert policy.compute_key(ctx(), {"x": 1}, {"a": 1}) is None
        assert isinstance(policy, cp._None)
    assert NONE.skip_lookup is False
    assert NO_CACHE.skip_lookup is True
    assert NONE != NO_CACHE
    assert INPUTS.skip_lookup is False and DEFAULT.skip_lookup is False


def test_cache_key_fn_policy():
    seen = []

    def key_fn(context: typing.Any, parameters: dict[str, typing.Any]) -> str | None:
        seen.append((context, parameters))
        return None if parameters.get("skip") else f"key-{parameters['x']}"

    policy = CachePolicy.from_cache_key_fn(key_fn)
    assert policy == CacheKeyFnPolicy(key_fn)
    context = ctx()
    assert policy.compute_key(context, {"x": 3}, {"a": 1}) == "key-3"
    assert seen == [(context, {"x": 3})]
    assert policy.compute_key(context, {"x": 3, "skip": True}, {}) is None

    bad = CacheKeyFnPolicy(lambda c, p: 42)  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="must return a str or None, got int"):
        bad.compute_key(context, {}, {})


def test_base_policy_must_be_subclassed():
    with pytest.raises(NotImplementedError, match="CachePolicy"):
        CachePolicy().compute_key(ctx(), {}, {})


# --- algebra --------------------------------------------------------------------------------


def test_default_is_task_source_run_id_and_inputs():
    assert isinstance(DEFAULT, CompoundCachePolicy)
    assert DEFAULT.policies == (TaskSource(), RunId(), Inputs())
    assert INPUTS + TASK_SOURCE + RUN_ID == DEFAULT  # inputs always come last


def test_default_key_changes_with_each_part():
    key = DEFAULT.compute_key(ctx(double), {"x": 1}, {})
    assert key is not None and HEX32.fullmatch(key)
    assert DEFAULT.compute_key(ctx(double), {"x": 1}, {}) == key
    assert DEFAULT.compute_key(ctx(double), {"x": 2}, {}) != key
    assert DEFAULT.compute_key(ctx(triple), {"x": 1}, {}) != key
    assert DEFAULT.compute_key(ctx(double, flow_run_id=uuid.UUID(int=9)), {"x": 1}, {}) != key
    # No inputs: the other members still give a key.
    assert DEFAULT.compute_key(ctx(double), {}, {}) is not None


def test_addition_flattens_merges_inputs_and_drops_no_cache():
    assert NONE + TASK_SOURCE == TASK_SOURCE
    assert TASK_SOURCE + NO_CACHE == TASK_SOURCE
    summed = Inputs(exclude=["a"]) + TASK_SOURCE + Inputs(exclude=["b", "a"]) + FLOW_PARAMETERS
    assert summed == CompoundCachePolicy(
        [TaskSource(), FlowParameters(), Inputs(exclude=["a", "b"])]
    )
    assert (DEFAULT + FLOW_PARAMETERS).policies == (
        TaskSource(),
        RunId(),
        FlowParameters(),
        Inputs(),
    )
    assert (TASK_SOURCE + TASK_SOURCE).policies == (TaskSource(),)
    assert (INPUTS + INPUTS).policies == (Inputs(),)
    with pytest.raises(TypeError):
        INPUTS + 1  # type: ignore[operator]


def test_subtraction_reaches_the_inputs_of_a_compound():
    assert (DEFAULT - "x").policies == (TaskSource(), RunId(), Inputs(exclude=["x"]))
    assert DEFAULT.policies[-1] == Inputs()  # DEFAULT itself is unchanged
    without_inputs = TASK_SOURCE + RUN_ID
    assert without_inputs - "x" == without_inputs
    assert TASK_SOURCE - "x" == TASK_SOURCE


def test_compound_keys():
    assert CompoundCachePolicy([NONE, NONE]).compute_key(ctx(), {"x": 1}, {}) is None
    assert CompoundCachePolicy().compute_key(ctx(), {"x": 1}, {}) is None
    one = CompoundCachePolicy([RUN_ID]).compute_key(ctx(), {}, {})
    assert one is not None and one != str(FLOW_RUN)  # the members' keys are hashed
    # A member giving None still counts: order and position matter.
    assert CompoundCachePolicy([RUN_ID, NONE]).compute_key(ctx(), {}, {}) != one
    with pytest.raises(TypeError, match="must be CachePolicy"):
        CompoundCachePolicy([RUN_ID, "x"])  # type: ignore[list-item]


def test_policies_are_immutable_hashable_values():
    assert {INPUTS - "a", Inputs(exclude=["a"]), DEFAULT, TASK_SOURCE + RUN_ID + INPUTS} == {
        Inputs(exclude=["a"]),
        DEFAULT,
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        INPUTS.exclude = ("x",)  # type: ignore[misc]
    assert repr(DEFAULT - "x") == (
        "CompoundCachePolicy(policies=(TaskSource(), RunId(), Inputs(exclude=('x',))))"
    )


def test_configure_sets_locking_refuses_key_storage_and_is_a_no_op_without_options():
    # Issue 10: isolation_level and lock_manager are supported now (as in Prefect 3.9.1);
    # key_storage stays refused by name.
    assert INPUTS.configure() is INPUTS
    configured = INPUTS.configure(isolation_level="SERIALIZABLE", lock_manager="locks")
    assert configured.isolation_level == "SERIALIZABLE" and configured.lock_manager == "locks"
    assert configured != INPUTS and INPUTS.isolation_level is None
    with pytest.raises(NotImplementedError, match="key_storage, lock_manager"):
        DEFAULT.configure(key_storage="/tmp/keys", lock_manager=object())
    with pytest.raises(NotSupportedError, match="key_storage"):
        INPUTS.configure(key_storage="/tmp/keys")


def test_extra_keyword_arguments_are_accepted():
    for policy in (INPUTS, TASK_SOURCE, RUN_ID, FLOW_PARAMETERS, NONE, NO_CACHE, DEFAULT):
        policy.compute_key(ctx(), {"x": 1}, {"a": 1}, extra="ignored")


# --- task_input_hash ------------------------------------------------------------------------


def test_task_input_hash():
    key = task_input_hash(ctx(double), {"x": 1})
    assert key is not None and HEX32.fullmatch(key)
    assert task_input_hash(ctx(double), {"x": 1}) == key
    assert task_input_hash(ctx(double), {"x": 2}) != key
    assert task_input_hash(ctx(triple, task_key="k"), {"x": 1}) != key
    assert task_input_hash(ctx(double, task_key="other"), {"x": 1}) != key
    # The run id plays no part: keys are shared across flow runs.
    assert task_input_hash(ctx(double, flow_run_id=uuid.UUID(int=9)), {"x": 1}) == key


def test_task_input_hash_gives_none_for_unhashable_arguments():
    assert task_input_hash(ctx(), {"lock": threading.Lock()}) is None


# --- across processes -----------------------------------------------------------------------

TASK_MODULE = textwrap.dedent(
    """
    def work(names, limit=3):
        return sorted(names)[:limit]
    """
)

CHILD = textwrap.dedent(
    """
    import sys, uuid
    from types import SimpleNamespace
    sys.path.insert(0, sys.argv[1])
    import tasks_under_test
    from millstream._engine.results.cache_policies import DEFAULT, task_input_hash

    ctx = SimpleNamespace(
        task=SimpleNamespace(fn=tasks_under_test.work, task_key="work-1"),
        task_run=SimpleNamespace(id=uuid.UUID(int=2), flow_run_id=uuid.UUID(int=1)),
    )
    inputs = {"names": {"ann", "bob", "cy", "dee"}, "limit": 2}
    print(DEFAULT.compute_key(ctx, inputs, {}), task_input_hash(ctx, inputs))
    """
)


def test_keys_are_the_same_in_every_process(tmp_path):
    (tmp_path / "tasks_under_test.py").write_text(TASK_MODULE)
    outputs = {
        subprocess.run(
            [sys.executable, "-c", CHILD, str(tmp_path)],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
        for seed in ("0", "99")
    }
    assert len(outputs) == 1
    default_key, input_hash = outputs.pop().split()
    assert HEX32.fullmatch(default_key) and HEX32.fullmatch(input_hash)
