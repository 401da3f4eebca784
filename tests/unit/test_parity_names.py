"""Names Prefect 3.9.1 users import, with the behaviour they have there."""

from __future__ import annotations

import contextvars
from importlib import metadata

import pytest

import millstream
import millstream.exceptions as exceptions
from millstream.states import (
    Completed,
    Failed,
    Pending,
    State,
    StateGroup,
    Submitting,
    is_state_iterable,
)
from millstream.utilities.annotations import NotSet, opaque, quote

# dir(prefect.exceptions) in 3.9.1, less HTTPStatusError and ValidationError (httpx's and
# pydantic's classes re-exported there; neither library is a dependency here).
PREFECT_EXCEPTIONS = """Abort BlockMissingCapabilities CancelledRun ConfigurationError CrashedRun
EventTooLarge ExternalSignal FailedRun FlowPauseTimeout FlowRunWaitTimeout FlowRunWatchError
HashError InfrastructureError InfrastructureNotAvailable InfrastructureNotFound InvalidNameError
InvalidRepositoryURLError MappingLengthMismatch MappingMissingIterable MissingContextError
MissingFlowError MissingProfileError MissingResult NotPausedError ObjectAlreadyExists
ObjectLimitReached ObjectNotFound ObjectUnsupported ParameterBindError ParameterTypeError
PausedRun PrefectException PrefectHTTPStatusError PrefectImportError PrefectSignal
ProfileSettingsValidationError ProtectedBlockError ReservedArgumentError ScriptError
SerializationError SignatureMismatchError TerminationSignal UnfinishedRun UnspecifiedFlowError
UpstreamTaskError""".split()


def test_version_is_the_distributions():
    assert millstream.__version__ == metadata.version("millstream")


@pytest.mark.parametrize("name", PREFECT_EXCEPTIONS)
def test_every_prefect_exception_name_is_importable(name):
    cls = getattr(exceptions, name)
    assert isinstance(cls, type) and issubclass(cls, BaseException)


def test_exception_details_follow_prefect():
    err = exceptions.ScriptError(ValueError("x"), "flows.py")
    assert str(err) == "Script at 'flows.py' encountered an exception: ValueError('x')"
    assert isinstance(err.user_exc, ValueError)
    mismatch = exceptions.SignatureMismatchError.from_bad_params(["a"], ["b"])
    assert isinstance(mismatch, TypeError)
    assert (
        str(mismatch) == "Function expects parameters ['a'] but was provided with parameters ['b']"
    )
    assert not issubclass(exceptions.PrefectSignal, Exception)
    assert issubclass(exceptions.MissingProfileError, ValueError)


def test_states_are_hashable_and_generic():
    state = Completed()
    assert {state: 1}[state] == 1
    assert hash(state) == hash(state)
    assert State[int] is not None and State[int](type="COMPLETED").is_completed()


def test_state_group_counts():
    group = StateGroup([Completed(), Failed(), Pending()])
    assert group.total_count == 3 and group.fail_count == 1 and group.not_final_count == 1
    assert group.any_failed() and not group.all_completed() and not group.all_final()
    assert repr(group) == "StateGroup<total=3, not_final=1, 'COMPLETED'=1, 'FAILED'=1, 'PENDING'=1>"
    assert StateGroup([Completed()]).all_completed()


def test_is_state_iterable_only_for_non_empty_lists_sets_and_tuples_of_states():
    assert is_state_iterable([Completed()]) and is_state_iterable((Completed(),))
    assert not is_state_iterable([]) and not is_state_iterable(Completed())
    assert not is_state_iterable([Completed(), 1]) and not is_state_iterable(quote([Completed()]))


def test_submitting_is_a_named_pending_state():
    state = Submitting()
    assert state.is_pending() and state.name == "Submitting"


def test_annotations():
    assert quote([1]).unquote() == [1]
    assert opaque(1) == opaque(1) and opaque(1) != quote(1)
    assert repr(opaque(5)) == "opaque(5)" and opaque(5).unwrap() == 5
    assert isinstance(NotSet, type)


def test_memory_lock_manager_is_one_per_process():
    from millstream.locking.memory import MemoryLockManager

    assert MemoryLockManager() is MemoryLockManager()


def test_context_model_enters_gets_copies_and_refuses_unknown_fields():
    from millstream.context import ContextModel

    class Ctx(ContextModel):
        x: int = 1
        y: str = "a"
        __var__ = contextvars.ContextVar("p10b_ctx")

    assert Ctx.get() is None
    with Ctx(x=2) as ctx:
        assert Ctx.get() is ctx and ctx.x == 2 and ctx.y == "a"
        assert ctx.serialize() == {"x": 2}
        with pytest.raises(RuntimeError, match="cannot be nested"):
            ctx.__enter__()
        copied = ctx.model_copy(update={"y": "b"})
        assert copied.y == "b" and copied.x == 2
    assert Ctx.get() is None
    with pytest.raises(RuntimeError, match="without an enter"):
        ctx.__exit__(None, None, None)
    with pytest.raises(TypeError, match="unexpected fields: z"):
        Ctx(z=1)


def test_settings_context_and_serialized_context_round_trip():
    from millstream.context import SettingsContext, hydrated_context, serialize_context
    from millstream.settings import (
        MILLSTREAM_RESULTS_PERSIST_BY_DEFAULT,
        Settings,
        temporary_settings,
    )

    assert isinstance(SettingsContext.get().settings, Settings)
    with temporary_settings({MILLSTREAM_RESULTS_PERSIST_BY_DEFAULT: True}):
        with millstream.tags("a"):
            data = serialize_context()
    assert data["flow_run_context"] == {} and data["tags_context"] == {"current_tags": ["a"]}
    assert MILLSTREAM_RESULTS_PERSIST_BY_DEFAULT.value() is False
    with hydrated_context(data):
        assert MILLSTREAM_RESULTS_PERSIST_BY_DEFAULT.value() is True
        assert millstream.context.TagsContext.get().current_tags == {"a"}
    assert MILLSTREAM_RESULTS_PERSIST_BY_DEFAULT.value() is False


def test_hydrating_another_runs_context_is_refused():
    from millstream.context import hydrated_context

    with pytest.raises(exceptions.NotSupportedError, match="flow_run_context"):
        with hydrated_context({"flow_run_context": {"flow_run_id": "x"}}):
            pass


def test_setting_objects_under_both_names():
    from millstream.settings import (
        MILLSTREAM_RESULTS_PERSIST_BY_DEFAULT as OURS,
    )
    from millstream.settings import (
        PREFECT_RESULTS_PERSIST_BY_DEFAULT as THEIRS,
    )
    from millstream.settings import get_current_settings, temporary_settings

    assert OURS.name == "MILLSTREAM_RESULTS_PERSIST_BY_DEFAULT"
    assert THEIRS.name == "PREFECT_RESULTS_PERSIST_BY_DEFAULT"
    assert repr(THEIRS) == "<PREFECT_RESULTS_PERSIST_BY_DEFAULT: <class 'bool'>>"
    assert THEIRS.value() is False and THEIRS == False and not THEIRS  # noqa: E712
    with temporary_settings({THEIRS: True}):
        assert OURS.value() is True and get_current_settings().results.persist_by_default
    with temporary_settings(updates={"PREFECT_LOGGING_LEVEL": "DEBUG"}):
        assert millstream.settings.MILLSTREAM_LOGGING_LEVEL.value() == "DEBUG"
    with pytest.raises(exceptions.ConfigurationError, match="PREFECT_RESULTS_PERSIST_BY_DEFAULT"):
        with temporary_settings({THEIRS: "maybe"}):
            pass
    # Prefect's other setting names import (code naming them loads) and refuse to be used.
    from millstream.settings import PREFECT_API_URL, PREFECT_TASK_SCHEDULING_DEFAULT_STORAGE_BLOCK

    with pytest.raises(exceptions.NotSupportedError, match="PREFECT_API_URL has no equivalent"):
        PREFECT_API_URL.value()
    with pytest.raises(exceptions.NotSupportedError, match="PREFECT_TASK_SCHEDULING_DEFAULT"):
        with temporary_settings({PREFECT_TASK_SCHEDULING_DEFAULT_STORAGE_BLOCK: "x/y"}):
            pass
    with pytest.raises(exceptions.NotSupportedError, match="PREFECT_UI_URL"):
        with temporary_settings({"PREFECT_UI_URL": "http://x"}):
            pass
    with pytest.raises(AttributeError, match="PREFECT_NOT_A_SETTING"):
        _ = millstream.settings.PREFECT_NOT_A_SETTING


def test_generate_mermaid_graph_is_refused_by_name():
    @millstream.flow
    def f() -> None:
        pass

    with pytest.raises(exceptions.NotSupportedError, match="generate_mermaid_graph"):
        f.generate_mermaid_graph()


def test_task_source_code():
    @millstream.task
    def t() -> int:
        return 1

    assert t.source_code is not None and "return 1" in t.source_code
    namespace: dict = {}
    exec("def made_at_runtime():\n    return 2\n", namespace)  # no source file to read
    assert millstream.task(namespace["made_at_runtime"]).source_code is None


def test_hashing_helpers():
    import hashlib
    import threading

    from millstream.utilities.hashing import hash_objects, stable_hash

    assert stable_hash("a", b"b") == hashlib.md5(b"ab").hexdigest()
    assert hash_objects(1, x=[2]) == hash_objects(1, x=[2]) != hash_objects(1, x=[3])
    assert len(hash_objects(1, hash_algo=hashlib.sha256)) == 64
    assert hash_objects(threading.Lock()) is None
    with pytest.raises(exceptions.HashError):
        hash_objects(threading.Lock(), raise_on_failure=True)
