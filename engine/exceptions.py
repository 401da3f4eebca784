"""The one error hierarchy of Millstream; ``millstream.exceptions`` re-exports it under
Prefect's names.

::

    BaseException
    ├── TerminationSignal (BaseException)        a signal ended the process while a run was live
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
        cls, fn_name: str, exc: TypeError, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> ParameterBindError:
        return cls(
            f"Error binding parameters for function {fn_name!r}: {exc}.\n"
            f"Function {fn_name!r} received arguments {args!r} and keyword arguments {kwargs!r}."
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


# -- task runners that run bodies in other processes (process pool, Dask) -----------------------
class RemoteTaskError(MillstreamError):
    """A task body running in a worker process raised an exception that could not be rebuilt
    here (its class cannot be imported, or its arguments cannot cross); names its type and
    message, and carries the worker's traceback as a note."""


class MissingExtraError(MillstreamError, ImportError):
    """An optional feature's packages are not installed; names the extra to install."""
