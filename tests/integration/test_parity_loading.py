"""Loading flows from entrypoints and local sources, as Prefect 3.9.1's loaders do."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from millstream.exceptions import MissingFlowError, NotSupportedError, ScriptError
from millstream.flows import (
    Flow,
    load_flow_arguments_from_entrypoint,
    load_flow_from_entrypoint,
    load_function_and_convert_to_flow,
    safe_load_flow_from_entrypoint,
)

SOURCE = """
from millstream import flow

@flow(name="my-flow", retries=2, description=DESCRIPTION)
def my_flow(x: int = 1) -> int:
    return x * 2

async def plain(y):
    return y

def not_a_flow():
    return 1

class Holder:
    @flow
    @staticmethod
    def method_flow() -> str:
        return "m"
"""


def write(tmp_path: Path, body: str, name: str = "flows.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


@pytest.fixture
def flows_file(tmp_path: Path) -> Path:
    return write(tmp_path, 'DESCRIPTION = "doubles " + "x"\n' + SOURCE)


def test_load_a_flow_from_a_file_and_run_it(flows_file: Path):
    loaded = load_flow_from_entrypoint(f"{flows_file}:my_flow")
    assert isinstance(loaded, Flow) and loaded.name == "my-flow"
    assert loaded(x=4) == 8


def test_missing_names_and_non_flows_are_missing_flow_errors(flows_file: Path):
    with pytest.raises(MissingFlowError, match="Flow function with name 'nope' not found"):
        load_flow_from_entrypoint(f"{flows_file}:nope")
    with pytest.raises(MissingFlowError, match="'not_a_flow' is not a flow"):
        load_flow_from_entrypoint(f"{flows_file}:not_a_flow")


def test_a_module_entrypoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    package = tmp_path / "pkg_p10b_load"
    package.mkdir()
    (package / "__init__.py").write_text("")
    write(package, 'DESCRIPTION = "d"\n' + SOURCE, "flows.py")
    monkeypatch.chdir(tmp_path)
    assert load_flow_from_entrypoint("pkg_p10b_load.flows.my_flow").name == "my-flow"


def test_a_script_that_raises_falls_back_to_a_safe_load(tmp_path: Path):
    path = write(
        tmp_path,
        "import not_installed_p10b\nDESCRIPTION = 'd'\n" + SOURCE + "\nraise RuntimeError('x')\n",
    )
    loaded = load_flow_from_entrypoint(f"{path}:my_flow")
    assert loaded.name == "my-flow" and loaded(x=2) == 4
    with pytest.raises(ScriptError, match="encountered an exception") as info:
        load_flow_from_entrypoint(f"{path}:my_flow", use_placeholder_flow=False)
    assert isinstance(info.value.user_exc, ModuleNotFoundError)


def test_safe_load_drops_annotations_and_defaults_it_cannot_evaluate(tmp_path: Path):
    path = write(
        tmp_path,
        """
        from millstream import flow
        import not_installed_p10b as np

        @flow
        def uses_missing(x: np.ndarray = np.zeros(3), y: int = 2) -> np.ndarray:
            return y
        """,
    )
    loaded = safe_load_flow_from_entrypoint(f"{path}:uses_missing")
    assert isinstance(loaded, Flow) and loaded(y=3) == 3
    assert safe_load_flow_from_entrypoint(f"{path}:uses_missing") is not None


def test_flow_arguments_are_read_from_the_decorator(flows_file: Path):
    arguments = load_flow_arguments_from_entrypoint(f"{flows_file}:my_flow")
    assert arguments == {"name": "my-flow", "retries": "2", "description": "doubles x"}
    assert load_flow_arguments_from_entrypoint(f"{flows_file}:plain") == {"name": "plain"}


def test_a_plain_function_becomes_a_flow(flows_file: Path):
    converted = load_function_and_convert_to_flow(f"{flows_file}:not_a_flow")
    assert isinstance(converted, Flow) and converted() == 1


def test_from_source_loads_from_a_local_directory(flows_file: Path):
    loaded = Flow.from_source(source=str(flows_file.parent), entrypoint="flows.py:my_flow")
    assert loaded(x=5) == 10
    with pytest.raises(NotSupportedError, match="remote repository"):
        Flow.from_source("https://github.com/org/repo.git", "flows.py:my_flow")

    async def in_async() -> Flow:
        return await Flow.from_source(flows_file.parent, "flows.py:my_flow")

    assert asyncio.run(in_async()).name == "my-flow"
