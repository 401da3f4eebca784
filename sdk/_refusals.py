"""Prefect modules that Millstream does not offer: importing one raises ``NotSupportedError``
naming the module and what to use instead, rather than a bare ``ModuleNotFoundError``.

One mechanism: a finder at the end of ``sys.meta_path``. Being last, it is asked only about
modules no other finder found, so a real module always wins over a table entry, and a name that
is neither real nor refused still ends in ``ModuleNotFoundError``. The error it raises is also an
``ImportError`` (``ModuleNotSupportedError``), so ``try: import ... except ImportError`` fallbacks
in ported code keep working.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Final

from millstream._engine.exceptions import ModuleNotSupportedError

# The public package's import name, derived so that renaming the package renames every entry.
PACKAGE: Final = __name__.rpartition(".")[0]

_SERVE = (
    f"serve flows in-process with {PACKAGE}.serve(flow.to_deployment(...)) or `millstream serve`"
)

# Module (relative to PACKAGE) -> why it is not offered and what to use instead. An entry also
# refuses its submodules (``blocks`` refuses ``blocks.system``).
REFUSED: Final[dict[str, str]] = {
    "agent": f"Prefect 2 agents poll a server's work queues; {_SERVE}",
    "automations": (
        "automations are triggered by a server's event stream; use state hooks "
        "(@flow(on_completion=..., on_failure=...)) in the flow itself"
    ),
    "blocks": (
        "blocks are documents stored by a server; keep values in "
        f"{PACKAGE}.variables.Variable, secrets in environment variables, and give "
        f"result_storage a path or {PACKAGE}.filesystems.LocalFileSystem"
    ),
    "client.cloud": (f"Prefect Cloud is not used; {PACKAGE}.get_client() reads the local database"),
    "deployments.steps": (
        "pull and push steps (git clone, docker build) belong to deploy() and prefect.yaml; "
        + _SERVE
    ),
    "docker": f"images are built by deploy() for work pools; {_SERVE}",
    "events": (
        "events are collected by a server; use state hooks, or read runs and states with "
        f"{PACKAGE}.get_client()"
    ),
    "infrastructure": (
        "infrastructure blocks (Process, DockerContainer, KubernetesJob) ran Prefect 2 agents' "
        f"flow runs; {_SERVE}"
    ),
    "runner": (f"the Runner is {PACKAGE}.serve / {PACKAGE}.aserve with flow.to_deployment(...)"),
    "server": (
        "there is no server: runs are recorded in one SQLite file (`millstream db path`), "
        f"read with {PACKAGE}.get_client()"
    ),
    "workers": f"workers and work pools need Prefect's server; {_SERVE}",
}


def refusal(fullname: str) -> str | None:
    """The message refusing ``fullname``, or None when it is not a refused module."""
    prefix = PACKAGE + "."
    if not fullname.startswith(prefix):
        return None
    relative = fullname[len(prefix) :]
    for refused, why in REFUSED.items():
        if relative == refused or relative.startswith(refused + "."):
            return (
                f"{fullname} is not offered by Millstream, an embedded engine without Prefect's "
                f"server: {why}."
            )
    return None


class RefusingFinder(MetaPathFinder):
    """Raises ``ModuleNotSupportedError`` for refused modules no other finder found."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        """Refuse ``fullname`` if it is in the table; otherwise let the import fail as usual."""
        message = refusal(fullname)
        if message is None:
            return None
        raise ModuleNotSupportedError(message, name=fullname)


def install() -> None:
    """Put the finder at the end of ``sys.meta_path`` (once, even if this module is reloaded)."""
    if not any(type(f).__name__ == RefusingFinder.__name__ for f in sys.meta_path):
        sys.meta_path.append(RefusingFinder())
