"""``import millstream`` and ``millstream --help`` stay quick: public names load when first used.

Each check runs in a fresh interpreter (this test process has imported everything already) and
reads ``sys.modules`` there, so it fails as soon as an eager import creeps back in.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import millstream

ROOT = Path(__file__).resolve().parents[2]

# Optional extras' packages: only the features that use them may import them.
HEAVY = (
    "dask",
    "distributed",
    "httpx",
    "jinja2",
    "markdown_it",
    "opentelemetry",
    "psycopg",
    "pydantic",
    "shtab",
    "starlette",
    "uvicorn",
)


def _modules_after(code: str, *argv: str, home: Path) -> list[str]:
    # The child prints its sys.modules as JSON on the last line of stderr (stdout is the
    # command's own output, e.g. the --help text).
    script = textwrap.dedent(code) + (
        "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "MILLSTREAM_HOME": str(home), "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    loaded: list[str] = json.loads(out.stderr.strip().splitlines()[-1])
    return loaded


def _under(modules: list[str], *prefixes: str) -> list[str]:
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes)]


def test_import_millstream_loads_no_extra_and_no_engine_machinery(tmp_path):
    loaded = _modules_after("import millstream", home=tmp_path)
    assert _under(loaded, *HEAVY) == []
    assert (
        _under(
            loaded,
            "asyncio",
            "millstream._engine.bridge",
            "millstream._engine.orchestrate",
            "millstream._engine.store",
            "millstream.flows",
            "millstream.tasks",
        )
        == []
    )


def test_running_a_flow_loads_no_extra(tmp_path):
    code = """
        from millstream import flow, task

        @task
        def one():
            return 1

        @flow
        def first():
            return one()

        assert first() == 1
    """
    loaded = _modules_after(code, home=tmp_path)
    assert "millstream._engine.orchestrate.flow_run" in loaded  # the flow really ran here
    assert _under(loaded, *HEAVY) == []


# The console script's own entry point (what `millstream` runs), with exit codes 0 and 2.
CLI = """
    import sys
    from millstream.cli import main

    try:
        main(sys.argv[1:])
    except SystemExit as exc:
        assert exc.code in (0, 2), exc.code
"""


@pytest.mark.parametrize(
    "argv",
    [("--help",), ("runs", "--help"), ("runs", "ls", "--no-such-option"), ("no-such-command",)],
    ids=["help", "group-help", "bad-option", "bad-command"],
)
def test_cli_help_and_usage_errors_load_only_the_parser(tmp_path, argv):
    loaded = _modules_after(CLI, *argv, home=tmp_path)
    assert _under(loaded, *HEAVY) == []
    assert (
        _under(
            loaded,
            "asyncio",
            "msgspec",
            "millstream._engine.bridge",
            "millstream._engine.orchestrate",
            "millstream._engine.store",
            "millstream.client",
            "millstream.cli.output",
        )
        == []
    )
    assert "millstream.cli.parser" in loaded


def test_cli_still_runs_a_handler_and_maps_its_errors(tmp_path):
    # The imports moved into main() are there when a command runs: a missing run is exit 1.
    code = """
        import sys
        from millstream.cli import main

        assert main(["runs", "inspect", "00000000-0000-0000-0000-000000000000"]) == 1
    """
    loaded = _modules_after(code, home=tmp_path)
    assert "millstream.cli.output" in loaded


def _type_checking_imports() -> dict[str, str]:
    # name -> module, from the `if TYPE_CHECKING:` block of sdk/__init__.py.
    tree = ast.parse((ROOT / "sdk" / "__init__.py").read_text())
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom), ast.unparse(stmt)
                for alias in stmt.names:
                    found[alias.asname or alias.name] = str(stmt.module)
    return found


def test_type_checkers_see_every_public_name_from_the_module_that_serves_it():
    lazy = millstream._LAZY
    assert sorted(lazy) == sorted(millstream.__all__)
    assert _type_checking_imports() == lazy


def test_every_public_name_resolves_in_a_fresh_process_to_its_defining_object(tmp_path):
    code = """
        import importlib
        import millstream

        names = list(millstream.__all__)
        assert set(names) <= set(dir(millstream))
        for name in names:
            module = importlib.import_module(millstream._LAZY[name])
            assert getattr(millstream, name) is getattr(module, name), name
        namespace = {}
        exec("from millstream import *", namespace)
        assert set(names) <= set(namespace)
    """
    _modules_after(code, home=tmp_path)


def test_submodules_are_attributes_and_refused_or_unknown_names_are_attribute_errors(tmp_path):
    code = """
        import millstream

        runners = millstream.task_runners  # no `import millstream.task_runners` first
        assert runners.ThreadPoolTaskRunner.__module__.startswith("millstream")
        assert millstream.client.orchestration.get_client is millstream.get_client
        for name in ("blocks", "no_such_thing", "__wrapped__", "not-an-identifier"):
            assert not hasattr(millstream, name), name
        try:
            millstream.no_such_thing
        except AttributeError as exc:
            assert exc.name == "no_such_thing"
            assert "millstream" in str(exc)
        try:
            import millstream.blocks  # still refused with the reason and the alternative
        except ImportError as exc:
            assert "Variable" in str(exc), exc
        else:
            raise AssertionError("millstream.blocks imported")
    """
    _modules_after(code, home=tmp_path)


def test_python_dash_m_millstream_help_loads_only_the_parser(tmp_path):
    # `python -m millstream` (sdk/__main__.py): -X importtime names every module imported.
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "millstream", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "MILLSTREAM_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "usage: millstream" in out.stdout
    loaded = [
        line.rpartition("|")[2].strip()
        for line in out.stderr.splitlines()
        if line.startswith("import time:")
    ]
    assert "millstream.cli.parser" in loaded
    assert _under(loaded, *HEAVY, "asyncio", "millstream._engine.store") == []
    assert _under(loaded, "millstream._engine.orchestrate", "millstream.client") == []


def test_first_uses_from_many_threads_at_once_get_the_same_objects(tmp_path):
    code = """
        import threading
        import millstream

        names = list(millstream.__all__) + ["task_runners", "client"]
        start = threading.Barrier(8)
        seen = []

        def resolve():
            start.wait()
            seen.append([getattr(millstream, name) for name in names])

        threads = [threading.Thread(target=resolve) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(seen) == 8
        for row in seen:
            assert all(a is b for a, b in zip(row, seen[0], strict=True))
    """
    _modules_after(code, home=tmp_path)
