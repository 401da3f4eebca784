"""Importing a Prefect module that Millstream does not offer raises NotSupportedError naming
the module and what to use instead; other missing modules still raise ModuleNotFoundError."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import millstream
from millstream.exceptions import NotSupportedError

PACKAGE = millstream.__name__

# Prefect modules ported code imports that need Prefect's server (checked independently of the
# refusal table, so that removing an entry by mistake is caught): (imported, refused module
# named in the error: Python imports a package before its submodules).
PREFECT_ONLY = [
    ("blocks", "blocks"),
    ("blocks.system", "blocks"),
    ("blocks.core", "blocks"),
    ("infrastructure", "infrastructure"),
    ("workers", "workers"),
    ("workers.process", "workers"),
    ("server", "server"),
    ("events", "events"),
    ("automations", "automations"),
    ("deployments.steps", "deployments.steps"),
    ("docker", "docker"),
    ("runner", "runner"),
    ("client.cloud", "client.cloud"),
]


def _refused_error(module: str) -> NotSupportedError:
    with pytest.raises(NotSupportedError) as info:
        importlib.import_module(module)
    return info.value


@pytest.mark.parametrize(("relative", "refused"), PREFECT_ONLY)
def test_prefect_only_modules_are_refused_with_a_reason(relative, refused):
    module, named = f"{PACKAGE}.{relative}", f"{PACKAGE}.{refused}"
    error = _refused_error(module)
    assert str(error).startswith(f"{named} is not offered by Millstream")
    assert isinstance(error, ImportError) and error.name == named
    assert module not in sys.modules


def test_every_table_entry_is_refused_naming_the_module():
    from millstream._refusals import REFUSED

    assert REFUSED, "the table is empty"
    for relative, why in REFUSED.items():
        module = f"{PACKAGE}.{relative}"
        error = _refused_error(module)
        assert str(error).startswith(f"{module} is not offered by Millstream"), module
        assert why in str(error)
        assert error.name == module


def test_refused_messages_say_what_to_use_instead():
    assert "Variable" in str(_refused_error(f"{PACKAGE}.blocks.system"))
    assert f"{PACKAGE}.serve" in str(_refused_error(f"{PACKAGE}.workers"))
    assert f"{PACKAGE}.serve" in str(_refused_error(f"{PACKAGE}.deployments.steps"))
    assert "get_client" in str(_refused_error(f"{PACKAGE}.server"))


def test_from_imports_are_refused_too():
    with pytest.raises(NotSupportedError, match=rf"{PACKAGE}\.infrastructure is not offered"):
        from millstream.infrastructure import Process  # noqa: F401
    with pytest.raises(NotSupportedError, match=rf"{PACKAGE}\.blocks is not offered"):
        from millstream import blocks  # noqa: F401
    with pytest.raises(NotSupportedError, match=r"deployments\.steps is not offered"):
        from millstream.deployments.steps import git_clone  # noqa: F401


def test_an_except_import_error_fallback_still_works():
    try:
        from millstream.blocks.system import Secret  # noqa: F401
    except ImportError:
        fell_back = True
    else:
        fell_back = False
    assert fell_back


@pytest.mark.parametrize(
    "module", [f"{PACKAGE}.no_such_module", f"{PACKAGE}.deployments.no_such_module"]
)
def test_other_missing_modules_still_raise_module_not_found(module):
    with pytest.raises(ModuleNotFoundError) as info:
        importlib.import_module(module)
    assert not isinstance(info.value, NotSupportedError)
    assert info.value.name == module


def test_real_modules_are_untouched_and_other_packages_unaffected():
    from millstream.client.orchestration import get_client
    from millstream.deployments import run_deployment

    assert callable(run_deployment) and callable(get_client)
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("blocks")  # a refused name outside the package is not refused
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("prefect_embedded_nothing.blocks")


def test_the_finder_is_installed_once_and_last():
    from millstream import _refusals

    importlib.reload(_refusals)
    _refusals.install()
    finders = [f for f in sys.meta_path if type(f).__name__ == "RefusingFinder"]
    assert len(finders) == 1
    assert sys.meta_path.index(finders[0]) > 0  # after the standard finders: real modules win


def test_a_fresh_interpreter_refuses_on_the_first_import():
    code = (
        "import sys\n"
        "try:\n"
        f"    import {PACKAGE}.blocks.system\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc.name)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["ModuleNotSupportedError", f"{PACKAGE}.blocks"]
