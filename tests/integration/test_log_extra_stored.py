"""Log lines' extra fields (``extra={...}`` on a call, ``get_run_logger(**extra)``) are stored
with the line, read back by ``client.read_logs`` and shown by ``millstream runs logs``; a line
without any stores none."""

from __future__ import annotations

import json
import uuid

from pg_fixtures import rows_of

from millstream import flow, get_run_logger, task
from millstream.cli import main
from millstream.client.orchestration import get_client
from millstream.client.schemas.filters import LogFilter, LogFilterFlowRunId


class Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


@task
def step(n: int) -> int:
    get_run_logger(stage="load").info("step %d", n, extra={"user": 1, "tags": ["a", "b"]})
    return n


@flow
def logged() -> uuid.UUID:
    logger = get_run_logger()
    logger.warning("plain line")
    logger.info("odd value", extra={"thing": Opaque(), "region": "eu"})
    step(7)
    from millstream.context import get_run_context

    return get_run_context().flow_run.id


def _lines(run_id: uuid.UUID) -> dict[str, object]:
    with get_client(sync_client=True) as client:
        found = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    return {line.message: line.extra for line in found}


def test_read_logs_returns_the_extra_fields(backend, db_path):
    run_id = logged()
    extras = _lines(run_id)
    # The logger's own fields and the call's, together; a value JSON cannot hold as its repr.
    assert extras["step 7"] == {"stage": "load", "user": 1, "tags": ["a", "b"]}
    assert extras["odd value"] == {"thing": "<opaque>", "region": "eu"}
    assert extras["plain line"] is None
    assert extras["Finished in state Completed()"] is None
    stored = dict(rows_of(db_path, "SELECT message, extra FROM log"))
    assert stored["plain line"] is None
    assert json.loads(stored["step 7"]) == {"stage": "load", "user": 1, "tags": ["a", "b"]}


def test_runs_logs_shows_the_extra_fields(capsys, backend):
    run_id = str(logged())
    capsys.readouterr()
    assert main(["runs", "logs", run_id, "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_message = {line["message"]: line for line in lines}
    assert by_message["step 7"]["extra"] == {"stage": "load", "user": 1, "tags": ["a", "b"]}
    assert by_message["plain line"]["extra"] is None
    assert main(["runs", "logs", run_id]) == 0
    text = capsys.readouterr().out.splitlines()
    (step_line,) = [line for line in text if ": step 7" in line]
    # As the console shows them: key=value after the message (text as is, others as repr).
    assert step_line.endswith(": step 7 stage=load user=1 tags=['a', 'b']")
    (plain,) = [line for line in text if "plain line" in line]
    assert plain.endswith(": plain line")


@flow
def loud() -> uuid.UUID:
    get_run_logger().info("big fields", extra={"blob": "x" * 5_000, "small": 1})
    from millstream.context import get_run_context

    return get_run_context().flow_run.id


def test_extra_fields_are_capped_like_messages(monkeypatch):
    monkeypatch.setenv("MILLSTREAM_LOGGING_MAX_LINE_CHARS", "1000")
    extra = _lines(loud())["big fields"]
    assert isinstance(extra, dict) and extra["small"] == 1
    blob = extra["blob"]
    assert blob.startswith('"xxx') and "truncated" in blob and len(blob) < 1_200
