"""Who may use the dashboard: hosts, origins, the token, the bind address; and escaping."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import httpx
import pytest

from millstream import flow, get_run_logger, task
from millstream.artifacts import create_markdown_artifact, create_table_artifact
from millstream.dashboard.security import check_bind

from .conftest import csrf_of, own_scripts_removed

EVIL = "<script>alert('x')</script>"


def test_foreign_hosts_and_origins_are_refused(dashboard: httpx.Client) -> None:
    assert dashboard.get("/").status_code == 200
    assert dashboard.get("/", headers={"host": "localhost:4200"}).status_code == 200
    # DNS rebinding: another site's name resolving to 127.0.0.1.
    assert dashboard.get("/", headers={"host": "evil.example"}).status_code == 421
    page = dashboard.get("/").text
    cross = dashboard.post(
        "/flow-runs", data={"csrf": csrf_of(page)}, headers={"origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    via_referer = dashboard.post(
        "/flow-runs", data={"csrf": csrf_of(page)}, headers={"referer": "https://evil.example/x"}
    )
    assert via_referer.status_code == 403
    same = dashboard.post(
        "/flow-runs", data={"csrf": csrf_of(page)}, headers={"origin": str(dashboard.base_url)}
    )
    assert same.status_code == 303


def test_token_as_bearer_or_cookie(serve_app, monkeypatch) -> None:
    monkeypatch.setenv("MILLSTREAM_SERVE_TOKEN", "s3cret")
    from millstream.dashboard import app

    server = serve_app(app())
    assert httpx.get(server.url + "/").status_code == 401
    assert httpx.get(server.url + "/static/app.css").status_code == 401
    wrong = httpx.get(server.url + "/", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401
    ok = httpx.get(server.url + "/", headers={"authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    with httpx.Client(base_url=server.url) as browser:
        landed = browser.get("/deployments?token=s3cret")
        assert landed.status_code == 303 and landed.headers["location"] == "/deployments"
        assert "HttpOnly" in landed.headers["set-cookie"]
        assert browser.get("/deployments").status_code == 200
    assert httpx.get(server.url + "/?token=wrong").status_code == 401


def test_binding_beyond_loopback_needs_a_token(millstream_home) -> None:
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    check_bind("localhost", None)
    check_bind("0.0.0.0", "t")
    with pytest.raises(ValueError, match="MILLSTREAM_SERVE_TOKEN"):
        check_bind("0.0.0.0", None)
    refused = subprocess.run(
        [sys.executable, "-m", "millstream", "dashboard", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "without a token" in refused.stderr


@task
def noisy(payload: str) -> str:
    get_run_logger().info(EVIL)
    return payload


@flow(flow_run_name="run-" + EVIL)
def hostile(payload: str = EVIL) -> str:
    create_markdown_artifact(f"# Title\n\n{EVIL}\n\n<img src=x onerror=alert(1)>", key="md")
    create_table_artifact([{"col": EVIL}], key="tbl", description=EVIL)
    create_markdown_artifact("[click](javascript:alert(1))", key="link")
    return noisy(payload)


def test_hostile_text_renders_as_text(dashboard: httpx.Client) -> None:
    hostile()
    listing = dashboard.get("/").text
    assert "<script>" not in own_scripts_removed(listing)
    assert "run-&lt;script&gt;" in listing
    run_id = re.search(r'href="/flow-runs/([0-9a-f-]{36})"', listing).group(1)
    page = dashboard.get(f"/flow-runs/{run_id}").text
    body = own_scripts_removed(page)
    assert "<script" not in body and not re.search(r"<img[^>]*onerror", body)
    assert "&lt;img src=x onerror=alert(1)&gt;" in body  # markdown's raw HTML: shown as text
    assert 'href="javascript:' not in body  # markdown-it refuses the link
    # Shown, escaped: the name, the parameter, the log line, the table cell, the markdown.
    assert page.count("&lt;script&gt;") >= 5
    task_id = re.search(r'href="/task-runs/([0-9a-f-]{36})"', page).group(1)
    task_page = own_scripts_removed(dashboard.get(f"/task-runs/{task_id}").text)
    assert "<script" not in task_page and "&lt;script&gt;" in task_page
    logs = dashboard.get(f"/flow-runs/{run_id}/logs.json").json()["logs"]
    assert EVIL in [line["message"] for line in logs]  # JSON is data; the page's JS sets text


@pytest.mark.slow
def test_the_dashboard_command_serves_on_loopback(millstream_home) -> None:
    from .conftest import free_port

    port = free_port()
    with subprocess.Popen(
        [sys.executable, "-m", "millstream", "dashboard", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        _check_served(proc, port)


def _check_served(proc: subprocess.Popen[str], port: int) -> None:
    try:
        assert proc.stdout is not None
        assert f"http://127.0.0.1:{port}/" in proc.stdout.readline()
        deadline = time.monotonic() + 30
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
        assert page.status_code == 200 and "Flow runs" in page.text
    finally:
        proc.terminate()
        proc.wait(10)


def test_allowed_hosts_when_mounted_or_bound_to_every_interface(serve_app) -> None:
    from millstream.dashboard import app

    named = serve_app(app(allowed_hosts=["ops.example.com"])).url
    assert httpx.get(named, headers={"host": "ops.example.com"}).status_code == 200
    assert httpx.get(named, headers={"host": "other.example.com"}).status_code == 421
    anywhere = serve_app(app(allowed_hosts=["*"])).url
    with httpx.Client(base_url=anywhere, headers={"host": "10.1.2.3:4200"}) as client:
        page = client.get("/")
        assert page.status_code == 200
        form = {"csrf": csrf_of(page.text)}
        foreign = client.post("/flow-runs", data=form, headers={"origin": "https://evil.example"})
        assert foreign.status_code == 403
        same = client.post("/flow-runs", data=form, headers={"origin": "http://10.1.2.3:4200"})
        assert same.status_code == 303
