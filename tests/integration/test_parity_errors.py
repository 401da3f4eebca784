"""Exception types and texts users match with pytest.raises(match=...), as Prefect 3.9.1
words them (each text first observed on prefect==3.9.1)."""

import re
import threading

import pytest

from millstream import flow, task
from millstream.exceptions import (
    FlowRunTimeoutError,
    ParameterBindError,
    ParameterTypeError,
    TaskRunTimeoutError,
)


# No return annotation and no `from __future__ import annotations`: the signature text in
# the message is inspect's, as in Prefect's (which shows annotations the same way).
@flow
def typed(x: int, y: str = "a"):  # type: ignore[no-untyped-def]
    return x


@task
def one(x: int) -> int:
    return x


def test_bind_errors_name_the_signature_and_what_was_received():
    # (Prefect strips "()" from the signature text, so a return annotation shows as "x) -> int".)
    # prefect 3.9.1: "Error binding parameters for function 'typed': missing a required
    # argument: 'x'.\nFunction 'typed' has signature 'x: int, y: str = 'a'' but received
    # args: () and kwargs: []."
    with pytest.raises(ParameterBindError) as missing:
        typed()  # type: ignore[call-arg]
    assert str(missing.value) == (
        "Error binding parameters for function 'typed': missing a required argument: 'x'.\n"
        "Function 'typed' has signature 'x: int, y: str = 'a'' but received args: () and "
        "kwargs: []."
    )
    with pytest.raises(
        ParameterBindError, match=re.escape("received args: (1,) and kwargs: ['z']")
    ):
        typed(1, z=3)  # type: ignore[call-arg]
    with pytest.raises(ParameterBindError, match="too many positional arguments"):
        typed(1, "b", 3)  # type: ignore[call-arg]

    @flow
    def calls_task_badly() -> None:
        one(1, z=2)  # type: ignore[call-arg]

    with pytest.raises(ParameterBindError, match=re.escape("'one' has signature 'x: int) -> int'")):
        calls_task_badly()


def test_invalid_parameters_raise_parameter_type_error():
    # prefect 3.9.1: ParameterTypeError "Flow run received invalid parameters:\n - x: Input
    # should be a valid integer, unable to parse string as an integer"; the state's message
    # starts "Validation of flow parameters failed with error: ParameterTypeError: ".
    with pytest.raises(ParameterTypeError, match="Input should be a valid integer"):
        typed("notint")  # type: ignore[arg-type]
    state = typed("notint", return_state=True)  # type: ignore[arg-type]
    assert (state.message or "").startswith(
        "Validation of flow parameters failed with error: ParameterTypeError: Flow run "
        "received invalid parameters:\n - "
    )


def test_timeouts_worded_as_prefect():
    # prefect 3.9.1: FlowRunTimeoutError "Scope timed out after 0.2 second(s)." and the state
    # TimedOut "Flow run exceeded timeout of 0.2 second(s)"; TaskRunTimeoutError likewise.
    never = threading.Event()

    @flow(timeout_seconds=0.2)
    def slow_flow() -> None:
        never.wait(3)

    @task(timeout_seconds=0.2)
    def slow_task() -> None:
        never.wait(3)

    @flow
    def runs_slow_task() -> None:
        slow_task()

    with pytest.raises(FlowRunTimeoutError, match=r"^Scope timed out after 0\.2 second\(s\)\.$"):
        slow_flow()
    state = slow_flow(return_state=True)
    assert (state.name, state.message) == ("TimedOut", "Flow run exceeded timeout of 0.2 second(s)")
    with pytest.raises(TaskRunTimeoutError, match=r"^Scope timed out after 0\.2 second\(s\)\.$"):
        runs_slow_task()


def test_decorator_and_option_errors_worded_as_prefect():
    # prefect 3.9.1: "'fn' must be callable"; "task() got an unexpected keyword argument
    # 'nonsense'"; "Task.with_options() got an unexpected keyword argument 'bogus'"; a future's
    # result(timeout=) raises TimeoutError "Task run <id> did not complete within 0.05 seconds".
    with pytest.raises(TypeError, match=r"^'fn' must be callable$"):
        task(1)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"^'fn' must be callable$"):
        flow(1)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="got an unexpected keyword argument 'nonsense'"):
        task(nonsense=1)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="got an unexpected keyword argument 'nonsense'"):
        flow(nonsense=1)  # type: ignore[call-overload]
    with pytest.raises(
        TypeError, match=r"^Task\.with_options\(\) got an unexpected keyword argument 'bogus'$"
    ):
        one.with_options(bogus=1)  # type: ignore[call-arg]

    release = threading.Event()

    @task
    def blocked() -> int:
        release.wait(5)
        return 1

    @flow
    def waits_too_little() -> None:
        future = blocked.submit()
        try:
            future.result(timeout=0.05)
        finally:
            release.set()

    with pytest.raises(TimeoutError, match=r"did not complete within 0\.05 seconds"):
        waits_too_little()
