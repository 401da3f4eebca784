"""The one error hierarchy of Millstream; ``millstream.exceptions`` re-exports it under
Prefect's names.

::

    BaseException
    ├── TerminationSignal (BaseException)        a signal ended the process while a run was live
    ├── Pause (BaseException)                    suspend_flow_run: the run leaves the process
    └── Exception
        └── MillstreamError                      (alias: PrefectException)
            ├── MissingContextError (RuntimeError)
            ├── ParameterBindError (TypeError)
            ├── ParameterTypeError (TypeError)
            ├── MappingLengthMismatch (ValueError)
            ├── MappingMissingIterable (ValueError)
            ├── ObjectNotFound (KeyError-like lookup miss, named id)
            ├── ObjectAlreadyExists
            ├── NotSupportedError (NotImplementedError)  server/Cloud-only
            │   └── ModuleNotSupportedError (ImportError)  a Prefect module not offered
            ├── ConfigurationError (ValueError)       a bad setting, naming the key and the value
            ├── StoreError                           the SQLite file cannot be used, naming the path
            │   ├── ReadOnlyDatabase                 it can be read but not written here
            │   ├── CorruptDatabase                  the file is damaged (`millstream db check`)
            │   └── LeaseLost                        another owner claimed a run of this process
            ├── SerializationError (TypeError)       a value no serializer can encode
            ├── UnhashableInputError (TypeError)     a cache-key input that cannot be hashed
            ├── StorageKeyError (ValueError)         a result storage key escaping its directory
            ├── RecoveryError                        a run that cannot be resumed
            ├── UpstreamTaskError                    an upstream future did not complete
            ├── FailedRun                            raised for a failed state holding no exception
            ├── CrashedRun                           raised for a crashed state holding no exception
            ├── CancelledRun                         raised for a cancelled state
            ├── UnfinishedRun                        result asked of a non-final state
            ├── PausedRun                            a run was paused
            ├── MissingResult                        a completed state made by hand has no data
            ├── SignatureMismatchError (TypeError)   parameters that do not fit a signature
            ├── NotPausedError (RuntimeError)        resume_flow_run of a run not paused
            ├── FlowRunWaitTimeout                   wait_for_flow_run ran out of time
            ├── ConcurrencySlotAcquisitionError      a limit missing (strict) or unusable
            ├── AcquireConcurrencySlotTimeoutError (TimeoutError)  no slot in time
            ├── Abort / Pause (signals inside the engine)
            └── TimedOut
                ├── FlowRunTimeoutError (TimeoutError)
                └── TaskRunTimeoutError (TimeoutError)
"""

from __future__ import annotations

from typing import Any


class MillstreamError(Exception):
    """Base class of every error Millstream raises on purpose."""


PrefectException = MillstreamError


class TerminationSignal(BaseException):
    """A signal (SIGTERM) ended the process while a run was live; the run becomes Crashed."""

    def __init__(self, signal: int) -> None:
        super().__init__(f"Process received signal {signal}")
        self.signal = signal


class MissingContextError(MillstreamError, RuntimeError):
    """A run-context API was used outside a flow or task run."""


class ParameterBindError(MillstreamError, TypeError):
    """Call arguments do not bind to the function's signature."""

    @classmethod
    def from_bind_failure(
        cls,
        fn_name: str,
        exc: TypeError,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        signature: str = "",
    ) -> ParameterBindError:
        # Worded as Prefect's (users match it with pytest.raises(match=...)).
        return cls(
            f"Error binding parameters for function '{fn_name}': {exc}.\n"
            f"Function '{fn_name}' has signature '{signature.strip('()')}' but received "
            f"args: {args} and kwargs: {list(kwargs)}."
        )


class ParameterTypeError(MillstreamError, TypeError):
    """A flow parameter does not validate against its annotation; names the parameter."""


class MappingLengthMismatch(MillstreamError, ValueError):
    """Iterables given to ``Task.map`` have different lengths."""


class MappingMissingIterable(MillstreamError, ValueError):
    """``Task.map`` was given no iterable to map over."""


class ObjectNotFound(MillstreamError):
    """A run, flow, variable or deployment id or name is not in the database."""


class ObjectAlreadyExists(MillstreamError):
    """An object with this name already exists and overwrite was not asked for."""


class NotSupportedError(MillstreamError, NotImplementedError):
    """A server- or Cloud-only Prefect API that an embedded engine does not provide."""


class ModuleNotSupportedError(NotSupportedError, ImportError):
    """Importing a Prefect module that Millstream does not offer (the message says what to
    use instead). An ``ImportError`` as well, as ``ModuleNotFoundError`` is: import machinery,
    ``importlib.util.find_spec`` probes and ``except ImportError`` fallbacks expect one. Not
    every ``NotSupportedError`` is one: a refused call such as ``deploy()`` is no import."""

    def __init__(self, message: str, *, name: str) -> None:
        super().__init__(message)
        # ImportError's own fields (ImportError.__init__ is not reached through the MRO).
        self.name = name
        self.msg = message


class ConfigurationError(MillstreamError, ValueError):
    """A setting has a bad value; the message names the setting and the value."""


class StoreError(MillstreamError):
    """The SQLite database cannot be opened or written; the message names the path."""


class ReadOnlyDatabase(StoreError):
    """The database exists and can be read, but this process cannot write it."""


class CorruptDatabase(StoreError):
    """The database file is damaged; ``millstream db check`` says where."""


class LeaseLost(StoreError):
    """Another process claimed a flow run of this one (its lease had expired): this process
    abandoned the run and none of its later writes for it were recorded."""


class SerializationError(MillstreamError, TypeError):
    """A value cannot be encoded by the configured serializer; names the type."""


class UnhashableInputError(MillstreamError, TypeError):
    """A cache-key input cannot be hashed deterministically; names the parameter."""


class StorageKeyError(MillstreamError, ValueError):
    """A result storage key is absolute or contains '..'."""


class RecoveryError(MillstreamError):
    """A crashed run cannot be resumed (for example its flow is no longer importable)."""


class UpstreamTaskError(MillstreamError):
    """An upstream task run this one waits for did not complete."""


class FailedRun(MillstreamError):
    """Raised when the result of a failed state that holds no exception is asked for."""


class CrashedRun(MillstreamError):
    """Raised when the result of a crashed state that holds no exception is asked for."""


class CancelledRun(MillstreamError):
    """Raised when the result of a cancelled state is asked for."""


class UnfinishedRun(MillstreamError):
    """Raised when the result of a state that is not final is asked for."""


class PausedRun(MillstreamError):
    """Raised when the result of a paused state is asked for."""


class Abort(MillstreamError):
    """Raised inside the engine to stop orchestrating a run without changing its state."""


class TimedOut(MillstreamError):
    """Base of the run timeout errors."""


class FlowRunTimeoutError(TimedOut, TimeoutError):
    """A flow run exceeded its ``timeout_seconds``."""


class TaskRunTimeoutError(TimedOut, TimeoutError):
    """A task run exceeded its ``timeout_seconds``."""


class FlowPauseTimeout(MillstreamError, TimeoutError):
    """A paused flow run was not resumed within its timeout."""


# -- Prefect's remaining exception names (issue 10): importable and raised where they apply ------


class MissingFlowError(MillstreamError):
    """An entrypoint names a flow that its file or module does not define."""


class UnspecifiedFlowError(MillstreamError):
    """A file defines several flows and none was named."""


class MissingResult(MillstreamError):
    """A state holds no result (persistence was off when it was recorded)."""


class ScriptError(MillstreamError):
    """A script raised while it was loaded (``load_flow_from_entrypoint``); ``user_exc``."""

    def __init__(self, user_exc: BaseException, path: str) -> None:
        super().__init__(f"Script at {str(path)!r} encountered an exception: {user_exc!r}")
        self.user_exc = user_exc


class SignatureMismatchError(MillstreamError, TypeError):
    """Parameters given to a function do not match its signature."""

    @classmethod
    def from_bad_params(
        cls, expected_params: list[str], provided_params: list[str]
    ) -> SignatureMismatchError:
        """The error for ``provided_params`` given to a function taking ``expected_params``."""
        return cls(
            f"Function expects parameters {expected_params} but was provided with"
            f" parameters {provided_params}"
        )


class ObjectLimitReached(MillstreamError):
    """A limit on the number of objects was reached."""


class ObjectUnsupported(MillstreamError):
    """An object is not supported in this context."""


class MissingProfileError(MillstreamError, ValueError):
    """A settings profile that does not exist was named."""


class ReservedArgumentError(MillstreamError, TypeError):
    """A function uses an argument name reserved by the engine."""


class InvalidNameError(MillstreamError, ValueError):
    """A name contains characters that are not allowed."""


class PrefectSignal(BaseException):  # Prefect's name
    """Base of Prefect's signals: BaseExceptions so that user ``except Exception`` lets them by."""


class ExternalSignal(BaseException):  # Prefect's name
    """Base of signals from outside the process."""


class BlockMissingCapabilities(MillstreamError):
    """A block lacks a capability it was asked for."""


class ProtectedBlockError(MillstreamError):
    """A protected block was asked to change."""


class InvalidRepositoryURLError(MillstreamError):
    """A repository URL is not valid."""


class InfrastructureError(MillstreamError):
    """Infrastructure for a run could not be used."""


class InfrastructureNotFound(MillstreamError):
    """Infrastructure for a run was not found."""


class InfrastructureNotAvailable(MillstreamError):
    """Infrastructure for a run is not available right now."""


class FlowRunWatchError(MillstreamError):
    """Watching a flow run failed."""


class PrefectImportError(ImportError):
    """An import of an optional part failed."""


class EventTooLarge(MillstreamError):
    """An event is larger than allowed."""


class ProfileSettingsValidationError(MillstreamError):
    """A settings profile holds invalid values; ``errors`` lists them."""

    def __init__(self, errors: list[tuple[Any, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors


class HashError(MillstreamError):
    """A value could not be hashed."""


class PrefectHTTPStatusError(MillstreamError):
    """An HTTP call answered with an error status (the worker's API, webhooks)."""


# -- flow control ------------------------------------------------------------------------------
class ConcurrencySlotAcquisitionError(MillstreamError):
    """Slots cannot be taken: a limit does not exist (``strict=True``), more slots are asked
    than the limit has, or ``rate_limit`` is used on a limit without slot decay."""


class AcquireConcurrencySlotTimeoutError(MillstreamError, TimeoutError):
    """Concurrency slots were not acquired within ``timeout_seconds``."""


class Pause(BaseException):
    """Raised by ``suspend_flow_run`` inside a flow body: the run leaves this process, its
    state (Suspended) already recorded. A BaseException so that ``except Exception`` in user
    code does not swallow it (Prefect's ``Pause`` signal is one too)."""

    def __init__(self, message: str = "The flow run was suspended", state: Any = None) -> None:
        super().__init__(message)
        self.state = state


class FlowRunWaitTimeout(MillstreamError):
    """``wait_for_flow_run`` gave up: the run did not finish within its timeout."""


class NotPausedError(MillstreamError, RuntimeError):
    """``resume_flow_run`` of a run that is not paused."""


# -- task runners that run bodies in other processes (process pool, Dask) -----------------------
class RemoteTaskError(MillstreamError):
    """A task body running in a worker process raised an exception that could not be rebuilt
    here (its class cannot be imported, or its arguments cannot cross); names its type and
    message, and carries the worker's traceback as a note."""


class MissingExtraError(MillstreamError, ImportError):
    """An optional feature's packages are not installed; names the extra to install."""
