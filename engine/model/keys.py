"""Where a function lives in the code, as a key stable across processes and checkouts."""

from __future__ import annotations

import hashlib
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

# Recovery imports a flow script again by its path under a module name with this prefix.
SCRIPT_MODULE_PREFIX = "millstream_recovered_"


def task_key(fn: Callable[..., Any]) -> str:
    """The key recovery matches a function's task runs on: ``qualname-<digest of its place>``."""
    # Recovery matches task runs on this key, in another process and possibly from a checkout
    # in another directory: it is made from where the function lives in the code (module, or
    # script file name, and qualified name), never from an absolute path.
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", repr(fn))
    digest = hashlib.sha1(f"{code_location(fn)}:{qualname}".encode()).hexdigest()[:8]
    return f"{qualname}-{digest}"


def code_location(fn: Callable[..., Any]) -> str:
    """The module name of ``fn``, or ``file:<name>.py`` for a script run or loaded by path."""
    module_name = getattr(fn, "__module__", None) or ""
    module = sys.modules.get(module_name)
    if module_name == "__main__" and module is not None:
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.name and spec.name != "__main__":
            return str(spec.name)  # `python -m pkg.mod`: the same key as when imported
    if module_name == "__main__" or module_name.startswith(SCRIPT_MODULE_PREFIX):
        # A script (`python flows/etl.py`, or recovery loading it again from its path): its
        # file name is what stays the same when the checkout moves.
        try:
            return "file:" + os.path.basename(inspect.getfile(fn))
        except TypeError:
            pass
    return module_name
