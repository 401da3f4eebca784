"""The dashboard in a real headless browser (Debian's chromium driven by Playwright).

Opens the runs page, filters it, opens a run and sees its timeline and logs, follows a
running run's live logs and cancels it, triggers a deployment run from the form (a refused
value first), and saves screenshots of the main pages under ``test-artifacts/dashboard/``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from millstream import flow, get_client, get_run_logger, task
from millstream.artifacts import create_progress_artifact, create_table_artifact
from millstream.client.schemas.objects import StateType

CHROMIUM = os.environ.get("MILLSTREAM_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"

pytestmark = pytest.mark.slow


@task
def step(i: int) -> int:
    get_run_logger().info("step %s done", i)
    return i


@flow
def nightly_report(days: int = 7) -> int:
    create_table_artifact([{"day": d, "rows": d * 10} for d in range(3)], key="daily-rows")
    create_progress_artifact(100, key="report-progress")
    return sum(step(i) for i in range(4))


@flow
def cleanup(count: int) -> int:
    return count


@flow
async def long_job(started: Any) -> None:
    logger = get_run_logger()
    started.set()
    for i in range(600):
        logger.info("tick %s", i)
        await asyncio.sleep(0.1)


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.skip(f"no chromium at {CHROMIUM} (.ci/run installs Debian's chromium)")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            page = context.new_page()
            page.set_default_timeout(15_000)
            page.on("dialog", lambda dialog: dialog.accept())
            yield page
        finally:
            context.close()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def wait_for(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_dashboard_in_a_browser(browser_page: Any, serve_app: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("MILLSTREAM_SERVE_POLL_INTERVAL", "0.1")
    from millstream.dashboard import app

    page = browser_page
    nightly_report(7)
    cleanup(1)
    cleanup(2)
    # Playwright's sync API keeps an event loop running in this thread: as with Prefect's
    # sync-compatible names, `_sync=True` asks for the blocking form.
    deployment = cleanup.to_deployment("on-demand", cron="0 4 * * *", _sync=True)
    deployment.apply(_sync=True)
    started = threading.Event()
    outcome: list[BaseException] = []

    def run_long_job() -> None:
        try:
            asyncio.run(long_job(started))
        except BaseException as exc:  # the call raises once the run is cancelled
            outcome.append(exc)

    runner = threading.Thread(target=run_long_job, daemon=True)
    runner.start()
    assert started.wait(30)
    base = serve_app(app()).url

    # The runs page, then filtered to one flow.
    page.goto(base + "/")
    assert page.locator("table.runs tbody tr").count() == 4
    assert page.locator('.count-chip[data-state="RUNNING"] b').inner_text() == "1"
    shot(page, "runs")
    page.select_option('select[name="flow"]', "nightly-report")
    page.click('#filters button[type="submit"]')
    page.wait_for_url("**flow=nightly-report**")
    assert page.locator("table.runs tbody tr").count() == 1

    # A finished run: its timeline, logs and artifacts.
    page.click("a.run-link")
    page.wait_for_selector("#timeline")
    assert page.locator(".gantt-bar").count() == 4
    assert page.locator("#logs").get_by_text("step 3 done").count() == 1
    assert page.locator(".artifact table.grid td").first.inner_text() == "0"
    shot(page, "flow-run")
    page.select_option('#log-filter select[name="level"]', "WARNING")
    page.wait_for_url("**level=WARNING**")
    assert page.locator("#logs").get_by_text("step 3 done").count() == 0

    # A running run: live logs arrive without a reload, then it is cancelled.
    with get_client(sync_client=True) as client:
        (running,) = [r for r in client.read_flow_runs() if r.flow_name == "long-job"]
    page.goto(f"{base}/flow-runs/{running.id}")
    assert page.locator("#live").is_visible()
    first = page.locator("#logs tbody tr").count()
    # (The page's CSP forbids eval, so the wait is a locator, not a JS predicate.)
    page.locator("#logs tbody tr").nth(first + 3).wait_for()
    shot(page, "flow-run-live")
    page.click('button[data-action="cancel"]')
    runner.join(30)
    assert not runner.is_alive()
    assert [type(e).__name__ for e in outcome] == ["CancelledRun"]
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(running.id).state_type is StateType.CANCELLED
    page.goto(f"{base}/flow-runs/{running.id}")
    assert page.locator("#run-state .state").inner_text() == "Cancelled"

    # A deployment run from the form: a refused value is shown, then a good one runs.
    page.goto(base + "/deployments")
    assert page.locator("#deployments").get_by_text("cron 0 4 * * *").count() == 1
    shot(page, "deployments")
    page.click("#deployments a.btn")
    page.fill('input[name="param:count"]', "lots")
    page.click('#trigger button[type="submit"]')
    assert "count" in page.locator("#errors").inner_text()
    shot(page, "deployment-errors")
    page.fill('input[name="param:count"]', "3")
    page.click('#trigger button[type="submit"]')
    page.wait_for_url("**/flow-runs/**")
    assert page.locator("#run-state .state").inner_text() == "Scheduled"
    with get_client(sync_client=True) as client:
        made = [r for r in client.read_flow_runs() if r.deployment_id == deployment.id]
    assert [r.parameters for r in made] == [{"count": 3}]
    wait_for(lambda: (SHOTS / "deployment-errors.png").exists())
