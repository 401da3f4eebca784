"""Millstream's public API: Prefect 3's SDK names, run by an embedded engine on one SQLite file.

Change ``from prefect import flow, task`` to ``from millstream import flow, task``.

Every public name is imported when first used (PEP 562), so that ``import millstream`` and the
``millstream`` command start quickly and a script pays only for what it touches: running flows
never imports serving, the client or the optional extras. Submodules are attributes too, as in
Prefect (``millstream.task_runners.ThreadPoolTaskRunner`` after a bare ``import millstream``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from millstream import _refusals

if TYPE_CHECKING:
    # What type checkers and IDEs see; at run time __getattr__ below imports the same names.
    from millstream._engine.logs import get_run_logger
    from millstream._engine.model.states import State
    from millstream._engine.orchestrate.annotations import allow_failure, quote, unmapped
    from millstream._engine.orchestrate.context import tags
    from millstream._engine.orchestrate.transactions import Transaction
    from millstream._version import __version__
    from millstream.client.orchestration import get_client
    from millstream.deployments import aserve, deploy, serve
    from millstream.flow_runs import (
        apause_flow_run,
        aresume_flow_run,
        asuspend_flow_run,
        pause_flow_run,
        resume_flow_run,
        sleep,
        suspend_flow_run,
    )
    from millstream.flows import Flow, flow
    from millstream.futures import PrefectFuture, as_completed, wait
    from millstream.recovery import arecover, recover
    from millstream.tasks import Task, task

# Importing a Prefect module Millstream does not offer says so (and what to use instead).
_refusals.install()

__all__ = [
    "Flow",
    "PrefectFuture",
    "State",
    "Task",
    "Transaction",
    "__version__",
    "allow_failure",
    "apause_flow_run",
    "arecover",
    "aresume_flow_run",
    "as_completed",
    "aserve",
    "asuspend_flow_run",
    "deploy",
    "flow",
    "get_client",
    "get_run_logger",
    "pause_flow_run",
    "quote",
    "recover",
    "resume_flow_run",
    "serve",
    "sleep",
    "suspend_flow_run",
    "tags",
    "task",
    "unmapped",
    "wait",
]

# Public name -> the module that defines it (kept equal to the TYPE_CHECKING block above;
# tests/unit/test_lazy_imports.py checks that every name in __all__ is here).
_LAZY: dict[str, str] = {
    "Flow": "millstream.flows",
    "PrefectFuture": "millstream.futures",
    "State": "millstream._engine.model.states",
    "Task": "millstream.tasks",
    "Transaction": "millstream._engine.orchestrate.transactions",
    "__version__": "millstream._version",
    "allow_failure": "millstream._engine.orchestrate.annotations",
    "apause_flow_run": "millstream.flow_runs",
    "arecover": "millstream.recovery",
    "aresume_flow_run": "millstream.flow_runs",
    "as_completed": "millstream.futures",
    "aserve": "millstream.deployments",
    "asuspend_flow_run": "millstream.flow_runs",
    "deploy": "millstream.deployments",
    "flow": "millstream.flows",
    "get_client": "millstream.client.orchestration",
    "get_run_logger": "millstream._engine.logs",
    "pause_flow_run": "millstream.flow_runs",
    "quote": "millstream._engine.orchestrate.annotations",
    "recover": "millstream.recovery",
    "resume_flow_run": "millstream.flow_runs",
    "serve": "millstream.deployments",
    "sleep": "millstream.flow_runs",
    "suspend_flow_run": "millstream.flow_runs",
    "tags": "millstream._engine.orchestrate.context",
    "task": "millstream.tasks",
    "unmapped": "millstream._engine.orchestrate.annotations",
    "wait": "millstream.futures",
}


def __getattr__(name: str) -> Any:
    import importlib

    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
        # Cached as a plain global: the next lookup does not come here again.
        globals()[name] = value
        return value
    if _is_submodule(name):
        # Importing a submodule binds it on this package, so this runs once per submodule.
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}", name=name)


def _is_submodule(name: str) -> bool:
    # Asks only this package's folder (PathFinder, not sys.meta_path): a refused Prefect module
    # (millstream.blocks) or a probe such as __wrapped__ stays an AttributeError, so hasattr()
    # and getattr(..., default) behave.
    from importlib.machinery import PathFinder

    return name.isidentifier() and PathFinder.find_spec(f"{__name__}.{name}", __path__) is not None


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
