"""Triggers per second sustained over the worker's HTTP API (issue 11, target >= 200).

``python benchmarks/http_triggers.py [--seconds S] [--concurrency N]``: starts a worker process
serving a trivial flow with ``webserver=True`` on a fresh database, POSTs
``/deployments/noop/bench/run`` from N concurrent keep-alive connections for S seconds, then
waits until every triggered run has completed and reports triggers/s (201 answers per second),
429 answers, and the end-to-end completions per second.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "serve_http"))

from serve_http_tools import free_port, wait_until_up

WORKER = textwrap.dedent(
    """
    from millstream import flow

    @flow
    def noop(i: int = 0) -> int:
        return i

    noop.serve("bench", webserver=True, print_starting_message=False)
    """
)


def _completed(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            row = conn.execute("SELECT count(*) FROM flow_run WHERE state_type = 'COMPLETED'")
            return int(row.fetchone()[0])
    except sqlite3.Error:
        return 0


async def _hammer(base: str, seconds: float, concurrency: int) -> tuple[int, int, float]:
    import httpx

    made = refused = 0
    deadline = time.perf_counter() + seconds

    async def one(client: httpx.AsyncClient) -> None:
        nonlocal made, refused
        i = 0
        while time.perf_counter() < deadline:
            i += 1
            r = await client.post("/deployments/noop/bench/run", json={"parameters": {"i": i}})
            if r.status_code == 201:
                made += 1
            elif r.status_code == 429:
                refused += 1
                await asyncio.sleep(0.01)
            else:
                raise SystemExit(f"unexpected {r.status_code}: {r.text}")

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        await asyncio.gather(*(one(client) for _ in range(concurrency)))
    return made, refused, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp, "worker.py")
        script.write_text(WORKER)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MILLSTREAM_")}
        env.update(MILLSTREAM_HOME=tmp, MILLSTREAM_SERVE_WEBSERVER_PORT=str(port))
        env["MILLSTREAM_LOGGING_LEVEL"] = "WARNING"
        profile = os.environ.get("PROFILE_WORKER")
        prefix = ["-m", "cProfile", "-o", profile] if profile else []
        proc = subprocess.Popen([sys.executable, *prefix, str(script)], env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            if not wait_until_up(base, proc, deadline):
                raise SystemExit("the worker did not come up")
            made, refused, elapsed = asyncio.run(_hammer(base, args.seconds, args.concurrency))
            db = Path(tmp, "millstream.db")
            while _completed(db) < made and time.monotonic() < deadline + 600:
                time.sleep(0.1)
            total = time.perf_counter()
            done = _completed(db)
            total = elapsed + max(0.0, time.perf_counter() - total)
        finally:
            proc.terminate()
            proc.wait(60)
    rate = made / elapsed
    print(
        f"HTTP triggers: {made} in {elapsed:.1f} s = {rate:.0f} triggers/s sustained "
        f"(target >= 200: {'ok' if rate >= 200 else 'MISSED'}), {refused} answered 429, "
        f"{done} completed, concurrency {args.concurrency}"
    )


if __name__ == "__main__":
    main()
