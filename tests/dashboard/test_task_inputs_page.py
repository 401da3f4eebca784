"""The task run page links the upstream task runs its inputs came from (by name); the log
views show each line's extra fields."""

from __future__ import annotations

import uuid

import httpx

from millstream import flow, get_run_logger, task


@task(task_run_name="make-{x}")
def make(x: int) -> int:
    return x


@task(task_run_name="combine")
def combine(items: list[int], scale: int = 1) -> int:
    get_run_logger().info("combined", extra={"user": "<b>ann</b>", "count": 2})
    return sum(items) * scale


@flow
def joined() -> dict[str, uuid.UUID]:
    first = make.submit(1)
    second = make.submit(2)
    gate = make.submit(3)
    last = combine.submit([first, second], scale=2, wait_for=[gate])
    last.wait()
    return {
        "first": first.task_run_id,
        "second": second.task_run_id,
        "gate": gate.task_run_id,
        "last": last.task_run_id,
    }


def test_the_task_run_page_links_its_upstream_runs(dashboard: httpx.Client) -> None:
    ids = joined()
    page = dashboard.get(f"/task-runs/{ids['last']}").text
    assert 'id="upstream"' in page
    for key, name in (("first", "make-1"), ("second", "make-2"), ("gate", "make-3")):
        assert f'<a href="/task-runs/{ids[key]}">{name}</a>' in page
    # By parameter: the items came from the first two, wait_for from the gate.
    upstream = page.split('id="upstream"', 1)[1].split("</dl>", 1)[0]
    items, waited = upstream.split("<code>wait_for</code>")
    assert "<code>items</code>" in items and "make-1" in items and "make-2" in items
    assert "make-3" not in items and "make-3" in waited
    # The upstream page is there to follow, and it has no upstream runs of its own.
    followed = dashboard.get(f"/task-runs/{ids['first']}")
    assert followed.status_code == 200 and 'id="upstream"' not in followed.text


def test_log_views_show_extra_fields(dashboard: httpx.Client) -> None:
    ids = joined()
    page = dashboard.get(f"/task-runs/{ids['last']}").text
    # Escaped like every other text of the page.
    assert '<div class="extra">user=&lt;b&gt;ann&lt;/b&gt; count=2</div>' in page
    page = dashboard.get(f"/task-runs/{ids['first']}").text
    assert 'class="extra"' not in page
    flow_run_id = page.split('href="/flow-runs/', 1)[1].split('"', 1)[0]
    lines = dashboard.get(f"/flow-runs/{flow_run_id}/logs.json").json()["logs"]
    extras = {line["message"]: line["extra"] for line in lines}
    assert extras["combined"] == "user=<b>ann</b> count=2"
    assert extras["Finished in state Completed()"] == ""
