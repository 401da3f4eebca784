"""The dashboard's pages and actions over a real server (httpx against uvicorn)."""

from __future__ import annotations

import datetime as dt
import re
import time

import httpx
import pytest

from millstream import flow, get_client, get_run_logger, tags, task
from millstream.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
)
from millstream.client.schemas.objects import StateType

from .conftest import csrf_of


@task
def double(x: int) -> int:
    get_run_logger().warning("doubling %s", x)
    return 2 * x


@flow
def child() -> int:
    return double(5)


@flow(persist_result=True)
def pipeline(x: int = 1) -> int:
    get_run_logger().info("an info line")
    create_markdown_artifact("## Heading\n\n*emphasis*", key="summary")
    create_table_artifact({"col": [1, 2]}, key="numbers")
    create_progress_artifact(42, key="done")
    return double(x) + child()


@flow
def other(label: str = "x") -> str:
    return label


def run_id_links(page: str) -> list[str]:
    return re.findall(r'class="run-link" href="/flow-runs/([0-9a-f-]{36})"', page)


def test_runs_page_lists_filters_counts_and_searches(dashboard: httpx.Client) -> None:
    pipeline(1)
    with tags("nightly"):
        other("a")
    other("b")
    page = dashboard.get("/")
    assert page.status_code == 200
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert len(run_id_links(page.text)) == 4  # the subflow run is a flow run too
    assert 'data-state="COMPLETED">Completed <b>4</b>' in page.text
    assert len(run_id_links(dashboard.get("/", params={"flow": "other"}).text)) == 2
    tagged = dashboard.get("/", params={"tag": "nightly"}).text
    assert len(run_id_links(tagged)) == 1
    # Counted from the tag table, whose state follows the run's (a trigger keeps it).
    assert 'data-state="COMPLETED">Completed <b>1</b>' in tagged
    assert (
        len(run_id_links(dashboard.get("/", params={"tag": "nightly", "flow": "other"}).text)) == 1
    )
    assert (
        run_id_links(dashboard.get("/", params={"tag": "nightly", "flow": "pipeline"}).text) == []
    )
    assert run_id_links(dashboard.get("/", params={"tag": "nightly", "state": "FAILED"}).text) == []
    assert run_id_links(dashboard.get("/", params={"tag": "absent"}).text) == []
    assert run_id_links(dashboard.get("/", params={"state": "FAILED"}).text) == []
    with get_client(sync_client=True) as client:
        runs = {r.flow_name: r for r in client.read_flow_runs()}
    target = runs["pipeline"]
    by_name = dashboard.get("/", params={"q": target.name[:5]}).text
    assert str(target.id) in run_id_links(by_name)
    by_id = dashboard.get("/", params={"q": str(target.id)[:13]}).text
    assert run_id_links(by_id) == [str(target.id)]
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    assert run_id_links(dashboard.get("/", params={"since": later}).text) == []
    assert dashboard.get("/", params={"state": "BOGUS"}).status_code == 400
    assert dashboard.get("/", params={"since": "yesterday"}).status_code == 400


def test_runs_are_paged_newest_first_by_cursor(dashboard: httpx.Client) -> None:
    with tags("bulk"):
        for i in range(53):
            other(str(i))
    by_tag = dashboard.get("/", params={"tag": "bulk"}).text
    tag_cursor = re.search(r'id="next-page" href="/\?([^"]+)"', by_tag)
    assert tag_cursor is not None and len(run_id_links(by_tag)) == 50
    tag_rest = dashboard.get("/?" + tag_cursor.group(1).replace("&amp;", "&")).text
    assert len(run_id_links(tag_rest)) == 3
    assert "Completed <b>53</b>" in tag_rest
    first = dashboard.get("/").text
    ids = run_id_links(first)
    assert len(ids) == 50
    cursor = re.search(r'id="next-page" href="/\?([^"]+)"', first)
    assert cursor is not None
    second = dashboard.get("/?" + cursor.group(1).replace("&amp;", "&")).text
    rest = run_id_links(second)
    assert len(rest) == 3 and not set(rest) & set(ids)
    assert 'id="next-page"' not in second
    with get_client(sync_client=True) as client:
        newest_first = [str(r.id) for r in client.read_flow_runs()]
    assert ids + rest == newest_first
    assert dashboard.get("/", params={"before": "garbage"}).status_code == 400


def test_flow_run_page_shows_everything(dashboard: httpx.Client) -> None:
    pipeline(3)
    with get_client(sync_client=True) as client:
        run = next(r for r in client.read_flow_runs() if r.flow_name == "pipeline")
    page = dashboard.get(f"/flow-runs/{run.id}").text
    assert "&#34;x&#34;: 3" in page  # parameters, escaped JSON
    assert re.search(r"<pre id=\"result\">\s*16\s*</pre>", page)  # 2*3 + 2*5
    assert page.count('class="gantt-row"') == 2  # its task run and its subflow run
    assert "(subflow)" in page
    assert 'id="task-runs"' in page and "double-" in page
    for state in ("Pending", "Running", "Completed"):
        assert f'">{state}</span>' in page
    assert "an info line" in page and "doubling 3" in page
    assert "<h2>Heading</h2>" in page and "<em>emphasis</em>" in page
    assert "<th>col</th>" in page and "<td>2</td>" in page
    assert 'style="width: 42.0%"' in page
    warnings_only = dashboard.get(f"/flow-runs/{run.id}", params={"level": "WARNING"}).text
    assert "an info line" not in warnings_only and "doubling 3" in warnings_only
    assert dashboard.get(f"/flow-runs/{run.id}", params={"level": "LOUD"}).status_code == 400
    assert dashboard.get("/flow-runs/00000000-0000-0000-0000-000000000000").status_code == 404
    assert dashboard.get("/flow-runs/not-an-id").status_code == 404


def test_logs_json_pages_by_line_id(dashboard: httpx.Client) -> None:
    pipeline(1)
    with get_client(sync_client=True) as client:
        run = next(r for r in client.read_flow_runs() if r.flow_name == "pipeline")
    everything = dashboard.get(f"/flow-runs/{run.id}/logs.json").json()
    assert everything["final"] is True and everything["state"] == "COMPLETED"
    lines = everything["logs"]
    assert [line["message"] for line in lines][:2] == [
        f"Beginning flow run {run.name!r} for flow 'pipeline'",
        "an info line",
    ]
    after = dashboard.get(f"/flow-runs/{run.id}/logs.json", params={"after": lines[1]["id"]})
    assert after.json()["logs"] == lines[2:]
    errors = dashboard.get(f"/flow-runs/{run.id}/logs.json", params={"level": "ERROR"})
    assert errors.json()["logs"] == []
    assert dashboard.get(f"/flow-runs/{run.id}/logs.json?after=x").status_code == 400


def test_task_run_page(dashboard: httpx.Client) -> None:
    pipeline(4)
    with get_client(sync_client=True) as client:
        task_run = next(t for t in client.read_task_runs() if t.parameters == {"x": 4})
    page = dashboard.get(f"/task-runs/{task_run.id}").text
    assert "&#34;x&#34;: 4" in page and "doubling 4" in page
    assert re.search(r'<pre id="result">\s*8\s*</pre>', page)
    assert 'id="cache-key"' in page
    assert dashboard.get("/task-runs/00000000-0000-0000-0000-000000000000").status_code == 404


def test_actions_need_the_csrf_token(dashboard: httpx.Client) -> None:
    other("keep")
    with get_client(sync_client=True) as client:
        (run,) = client.read_flow_runs()
    page = dashboard.get(f"/flow-runs/{run.id}").text
    refused = dashboard.post(f"/flow-runs/{run.id}/delete", data={"csrf": "forged"})
    assert refused.status_code == 403
    url = f"{dashboard.base_url}/flow-runs/{run.id}/delete"
    bare = httpx.post(url, data={"csrf": csrf_of(page)})
    assert bare.status_code == 403  # the token without the cookie is worth nothing
    deleted = dashboard.post(f"/flow-runs/{run.id}/delete", data={"csrf": csrf_of(page)})
    assert deleted.status_code == 303 and deleted.headers["location"] == "/"
    with get_client(sync_client=True) as client:
        assert client.read_flow_runs() == []


def test_bulk_delete(dashboard: httpx.Client) -> None:
    for label in "abc":
        other(label)
    page = dashboard.get("/").text
    ids = run_id_links(page)
    done = dashboard.post("/flow-runs", data={"csrf": csrf_of(page), "run": ids[:2]})
    assert done.status_code == 303
    assert run_id_links(dashboard.get("/").text) == ids[2:]


def test_deployments_trigger_cancel_and_retry(dashboard: httpx.Client) -> None:
    deployment = other.to_deployment("web", parameters={"label": "dflt"}, cron="0 3 * * *")
    deployment.apply()
    listing = dashboard.get("/deployments").text
    assert "other/web" in listing and "cron 0 3 * * *" in listing
    assert "No process holds a run now." in listing
    form_page = dashboard.get(f"/deployments/{deployment.id}").text
    assert 'name="param:label"' in form_page
    made = dashboard.post(
        f"/deployments/{deployment.id}/run",
        data={"csrf": csrf_of(form_page), "param:label": "from the form"},
    )
    assert made.status_code == 303
    run_id = made.headers["location"].rsplit("/", 1)[1]
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
    assert run.state_type is StateType.SCHEDULED
    assert run.parameters == {"label": "from the form"}
    assert run.id.hex[:8] in dashboard.get("/deployments").text.replace("-", "")

    run_page = dashboard.get(f"/flow-runs/{run_id}").text
    assert 'data-action="cancel"' in run_page and 'data-action="retry"' not in run_page
    cancelled = dashboard.post(f"/flow-runs/{run_id}/cancel", data={"csrf": csrf_of(run_page)})
    assert cancelled.status_code == 303
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(run_id).state_type is StateType.CANCELLED
    again = dashboard.get(f"/flow-runs/{run_id}").text
    retried = dashboard.post(f"/flow-runs/{run_id}/retry", data={"csrf": csrf_of(again)})
    assert retried.status_code == 303
    new_id = retried.headers["location"].rsplit("/", 1)[1]
    assert new_id != run_id
    with get_client(sync_client=True) as client:
        new = client.read_flow_run(new_id)
    assert (new.parameters, new.deployment_id) == (run.parameters, deployment.id)
    not_paused = dashboard.post(f"/flow-runs/{new_id}/resume", data={"csrf": csrf_of(again)})
    assert not_paused.status_code == 409 and "isn&#39;t paused" in not_paused.text


def test_trigger_form_shows_validation_errors(dashboard: httpx.Client) -> None:
    @flow
    def typed(count: int, name: str = "n") -> int:
        return count

    deployment = typed.to_deployment("checked")
    deployment.apply()
    page = dashboard.get(f"/deployments/{deployment.id}").text
    missing = dashboard.post(f"/deployments/{deployment.id}/run", data={"csrf": csrf_of(page)})
    assert missing.status_code == 400 and "count: a value is required" in missing.text
    wrong = dashboard.post(
        f"/deployments/{deployment.id}/run",
        data={"csrf": csrf_of(page), "param:count": "many"},
    )
    assert wrong.status_code == 400 and 'id="errors"' in wrong.text and "count" in wrong.text
    assert 'value="many"' in wrong.text  # the value typed is kept on the form
    with get_client(sync_client=True) as client:
        assert client.read_flow_runs() == []
    ok = dashboard.post(
        f"/deployments/{deployment.id}/run", data={"csrf": csrf_of(page), "param:count": "7"}
    )
    assert ok.status_code == 303
    with get_client(sync_client=True) as client:
        (made,) = client.read_flow_runs()
    # Parameters left empty are not sent: the flow's own defaults fill them when it runs.
    assert made.parameters == {"count": 7}


def test_static_files_and_unknown_pages(dashboard: httpx.Client) -> None:
    css = dashboard.get("/static/app.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]
    assert dashboard.get("/static/app.js").status_code == 200
    assert dashboard.get("/nowhere").status_code == 404


def test_mounted_under_a_prefix(serve_app) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from millstream.dashboard import app

    other("mounted")
    outer = Starlette(routes=[Mount("/runs", app())])
    server = serve_app(outer)
    with httpx.Client(base_url=server.url) as client:
        page = client.get("/runs/")
        assert page.status_code == 200
        assert 'href="/runs/static/app.css"' in page.text
        (run_id,) = re.findall(r'href="/runs/flow-runs/([0-9a-f-]{36})"', page.text)
        assert client.get(f"/runs/flow-runs/{run_id}").status_code == 200
        assert client.get("/runs/static/app.js").status_code == 200
        run_page = client.get(f"/runs/flow-runs/{run_id}").text
        gone = client.post(f"/runs/flow-runs/{run_id}/delete", data={"csrf": csrf_of(run_page)})
        assert gone.status_code == 303 and gone.headers["location"] == "/runs/"


def test_resume_a_paused_run(dashboard: httpx.Client) -> None:
    import threading

    from millstream.flow_runs import pause_flow_run

    @flow
    def approval() -> str:
        pause_flow_run(timeout=60, poll_interval=0.05)
        return "approved"

    results: list[object] = []
    runner = threading.Thread(target=lambda: results.append(approval()), daemon=True)
    runner.start()
    deadline = time.monotonic() + 30
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs()
        if runs and runs[0].state_type is StateType.PAUSED:
            break
        assert time.monotonic() < deadline, "the run did not pause"
        time.sleep(0.02)
    page = dashboard.get(f"/flow-runs/{runs[0].id}").text
    assert 'data-action="resume"' in page and 'data-action="cancel"' in page
    resumed = dashboard.post(f"/flow-runs/{runs[0].id}/resume", data={"csrf": csrf_of(page)})
    assert resumed.status_code == 303
    runner.join(30)
    assert results == ["approved"]


def test_a_failed_run_shows_its_message_and_traceback(dashboard: httpx.Client) -> None:
    @task
    def explode() -> None:
        raise ValueError("bad <input>")

    @flow
    def fragile() -> None:
        explode()

    with pytest.raises(ValueError):
        fragile()
    with get_client(sync_client=True) as client:
        (run,) = client.read_flow_runs()
    page = dashboard.get(f"/flow-runs/{run.id}").text
    assert "Flow run encountered an exception: ValueError: bad &lt;input&gt;" in page
    traceback = re.search(r'<pre class="message" id="traceback">(.*?)</pre>', page, re.S)
    assert traceback is not None and "Traceback (most recent call last)" in traceback.group(1)
    assert 'data-state="FAILED"' in page


def test_artifacts_pages(dashboard: httpx.Client) -> None:
    pipeline(1)
    pipeline(2)
    listing = dashboard.get("/artifacts").text
    keys = re.findall(r'href="/artifacts/([a-z-]+)"', listing)
    assert keys == ["done", "numbers", "summary"]
    versions = dashboard.get("/artifacts/summary").text
    assert versions.count('class="artifact"') == 2 and "<h2>Heading</h2>" in versions
    assert dashboard.get("/artifacts/missing").status_code == 404
