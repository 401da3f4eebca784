"""Artifacts (prefect.artifacts): made in runs, recorded, read back by the client and CLI."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import subprocess
import sys
import uuid
import warnings

import pytest

from millstream import flow, get_client, task
from millstream.artifacts import (
    MarkdownArtifact,
    acreate_markdown_artifact,
    create_image_artifact,
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from millstream.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    ArtifactFilterType,
    FlowRunFilter,
    FlowRunFilterName,
)
from millstream.exceptions import ObjectNotFound


@task
def tabulate() -> uuid.UUID:
    return create_table_artifact(
        [{"name": "a", "score": 1.5}, {"name": "b", "score": math.nan}],
        key="scores",
        description="**scores**",
    )


@flow
def report(n: int = 1) -> dict[str, uuid.UUID]:
    ids = {
        "md": create_markdown_artifact(f"# Report {n}", key="report"),
        "link": create_link_artifact("https://example.org/x", "Example"),
        "bare_link": create_link_artifact("https://example.org/y"),
        "image": create_image_artifact("https://example.org/i.png", key="picture"),
        "table": tabulate(),
    }
    progress = create_progress_artifact(10, key="progress")
    update_progress_artifact(progress, 55.5, description="half way")
    ids["progress"] = progress
    return ids


def by_id() -> dict[uuid.UUID, object]:
    with get_client(sync_client=True) as client:
        return {a.id: a for a in client.read_artifacts()}


def test_each_kind_is_recorded_with_its_run_and_prefect_data() -> None:
    ids = report(1)
    assert all(isinstance(i, uuid.UUID) for i in ids.values())
    found = by_id()
    md, link, bare, image, table, progress = (
        found[ids[k]] for k in ("md", "link", "bare_link", "image", "table", "progress")
    )
    assert (md.type, md.key, md.data) == ("markdown", "report", "# Report 1")
    assert (link.type, link.key, link.data) == (
        "markdown",
        None,
        "[Example](https://example.org/x)",
    )
    assert bare.data == "[https://example.org/y](https://example.org/y)"
    assert (image.type, image.data) == ("image", "https://example.org/i.png")
    # A table is JSON text, NaN recorded as null (what Prefect sends).
    assert table.type == "table" and table.description == "**scores**"
    assert table.data == '[{"name": "a", "score": 1.5}, {"name": "b", "score": null}]'
    assert (progress.type, progress.data, progress.description) == ("progress", 55.5, "half way")
    with get_client(sync_client=True) as client:
        (run,) = client.read_flow_runs()
        (task_run,) = client.read_task_runs()
    assert {a.flow_run_id for a in found.values()} == {run.id}
    # A task's artifact names its task run and that run's flow run, as in Prefect.
    assert table.task_run_id == task_run.id
    assert md.task_run_id is None


def test_async_forms_are_awaited_in_async_code() -> None:
    @flow
    async def async_report() -> tuple[uuid.UUID, uuid.UUID]:
        first = await create_markdown_artifact("from async", key="async-md")
        second = await acreate_markdown_artifact("explicit", key="async-md")
        return first, second

    first, second = asyncio.run(async_report())
    found = by_id()
    assert found[first].data == "from async" and found[second].data == "explicit"

    async def read_latest() -> list:
        async with get_client() as client:
            return await client.read_latest_artifacts()

    (latest,) = asyncio.run(read_latest())
    assert (latest.key, latest.latest_id, latest.data) == ("async-md", second, "explicit")


def test_latest_by_key_filters_and_sorts() -> None:
    report(1)
    report(2)
    with get_client(sync_client=True) as client:
        latest = {c.key: c for c in client.read_latest_artifacts()}
        assert set(latest) == {"report", "picture", "scores", "progress"}
        assert latest["report"].data == "# Report 2"
        versions = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["report"]))
        )
        assert [v.data for v in versions] == ["# Report 2", "# Report 1"]
        tables = client.read_artifacts(
            artifact_filter=ArtifactFilter(type=ArtifactFilterType(any_=["table"]))
        )
        assert len(tables) == 2
        (run_one,) = [r for r in client.read_flow_runs() if r.parameters == {"n": 1}]
        of_run = client.read_artifacts(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[run_one.name]))
        )
        assert {a.flow_run_id for a in of_run} == {run_one.id} and len(of_run) == 6
        ordered = [a.key for a in client.read_artifacts(sort="KEY_ASC")]
        assert ordered == sorted(ordered, key=lambda k: (k is not None, k or ""))
        assert ordered[:4] == [None] * 4 and ordered[-1] == "scores"


def test_keys_follow_prefects_rule_and_progress_is_clamped(caplog) -> None:
    @flow
    def bad() -> None:
        create_markdown_artifact("x", key="Not_Allowed")

    with pytest.raises(ValueError, match="lowercase letters, numbers, and dashes"):
        bad()

    @flow
    def over() -> uuid.UUID:
        return create_progress_artifact(150)

    with caplog.at_level(logging.WARNING, logger="millstream.artifacts"):
        made = over()
    assert by_id()[made].data == 100.0
    assert "invalid value" in caplog.text
    with pytest.raises(ObjectNotFound):
        update_progress_artifact(uuid.uuid4(), 3)


def test_outside_a_run_warns_as_prefect_does() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        made = create_markdown_artifact("outside", key="outside")
    assert [w.category for w in caught] == [FutureWarning]
    artifact = by_id()[made]
    assert artifact.flow_run_id is None and artifact.task_run_id is None


def test_artifact_classes_and_client_writes() -> None:
    @flow
    def with_class() -> object:
        return MarkdownArtifact(markdown="*made*", key="cls").create()

    record = with_class()
    assert MarkdownArtifact.get("cls").id == record.id
    with get_client(sync_client=True) as client:

        class Update:
            data = "changed"
            description = "new"

        client.update_artifact(record.id, Update())
        assert by_id()[record.id].data == "changed"
        client.delete_artifact(record.id)
        assert record.id not in by_id()
        with pytest.raises(ObjectNotFound):
            client.delete_artifact(record.id)


def test_deleting_a_run_deletes_its_artifacts() -> None:
    report(1)
    with get_client(sync_client=True) as client:
        (run,) = client.read_flow_runs()
        client.delete_flow_run(run.id)
        assert client.read_artifacts() == []


def test_cli_ls_and_inspect(millstream_home) -> None:
    report(1)
    report(2)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "millstream", *args], capture_output=True, text=True, timeout=60
        )

    listed = cli("artifacts", "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    keys = sorted(a["key"] for a in json.loads(listed.stdout))
    assert keys == ["picture", "progress", "report", "scores"]
    every = json.loads(cli("artifacts", "ls", "--all", "--json").stdout)
    assert len(every) == 12
    table = cli("artifacts", "ls")
    assert "report" in table.stdout and "KEY" in table.stdout
    inspected = json.loads(cli("artifacts", "inspect", "report", "--json").stdout)
    assert [a["data"] for a in inspected] == ["# Report 2", "# Report 1"]
    assert "# Report 2" in cli("artifacts", "inspect", "report").stdout
    missing = cli("artifacts", "inspect", "nope")
    assert missing.returncode == 1 and "nope" in missing.stderr
