"""PostgreSQL store figures (issue 12): ``python benchmarks/postgres.py``.

Starts a throwaway PostgreSQL server (as the tests do: initdb + pg_ctl in a temporary
directory, an unprivileged user when run as root; fsync on, synchronous_commit off, like
SQLite's WAL with synchronous=NORMAL) and measures, in one run:

- P1: the per-task overhead of an async task awaited in an async flow, on PostgreSQL and on
  SQLite (target: PostgreSQL's <= 3x SQLite's);
- P2: worker throughput, 2 worker processes (each its own MILLSTREAM_HOME, as on two hosts)
  draining one database of trivial flow runs (target >= 200 runs/s), SQLite beside it;
- P3: 1,000 triggered runs executed by 3 workers: every run exactly once (0 duplicates,
  0 missing).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "postgres"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import pg_server  # noqa: E402
from _common import async_chain  # noqa: E402

WORKER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from millstream import flow, serve

    LOG = os.environ["EXEC_LOG"]

    @flow
    def trivial() -> None:
        return None

    @flow
    def counted(n: int = 0) -> int:
        from millstream.runtime import flow_run
        # One short O_APPEND write per run: lines of concurrent processes never interleave.
        fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, f"{flow_run.id}\\n".encode())
        os.close(fd)
        return n

    if __name__ == "__main__":
        target = {"trivial": trivial, "counted": counted}[sys.argv[1]]
        serve(target.to_deployment(sys.argv[1]), limit=16, print_starting_message=False)
    """
)


def _use(url: str | None, home: Path) -> None:
    from millstream._engine.store import close_all

    close_all()
    os.environ["MILLSTREAM_HOME"] = str(home)
    if url:
        os.environ["MILLSTREAM_DATABASE_URL"] = url
    else:
        os.environ.pop("MILLSTREAM_DATABASE_URL", None)


# -- P1: per-task overhead ----------------------------------------------------------------------
def per_task(server: pg_server.Server, n: int, reps: int) -> dict[str, float]:
    _, chain, bare = async_chain()
    backends = {"sqlite": None, "postgres": server.fresh_url()}
    times: dict[str, list[float]] = {name: [] for name in [*backends, "bare"]}
    homes = {name: Path(tempfile.mkdtemp(prefix=f"bench-{name}-")) for name in backends}
    for name, url in backends.items():  # warm each path once
        _use(url, homes[name])
        asyncio.run(chain(10))
    # As benchmarks/run.py does: stderr quiet, the lines still stored.
    logging.getLogger("millstream").handlers[0].setLevel(logging.CRITICAL)
    for _ in range(reps):  # alternating, so that machine noise hits both alike
        for name, url in backends.items():
            _use(url, homes[name])
            start = time.perf_counter()
            asyncio.run(chain(n))
            times[name].append(time.perf_counter() - start)
        start = time.perf_counter()
        asyncio.run(bare(n))
        times["bare"].append(time.perf_counter() - start)
    _use(None, homes["sqlite"])
    median = {name: statistics.median(t) for name, t in times.items()}
    over = {name: (median[name] - median["bare"]) / n * 1e6 for name in backends}
    ratio = over["postgres"] / over["sqlite"]
    print(
        f"P1 async task in an async flow, {n} tasks x {reps}: overhead sqlite "
        f"{over['sqlite']:.1f} us/task, postgres {over['postgres']:.1f} us/task, ratio "
        f"{ratio:.2f}x (target <= 3x) | {'ok' if ratio <= 3 else 'MISSED'}"
    )
    return {"sqlite_us": over["sqlite"], "postgres_us": over["postgres"], "ratio": ratio}


# -- workers ------------------------------------------------------------------------------------
class Workers:
    """Worker processes on one database, each with a home of its own (a host)."""

    def __init__(self, url: str | None, root: Path, which: str, count: int) -> None:
        self.root, self.url = root, url
        script = root / "worker.py"
        script.write_text(WORKER)
        self.log = root / "exec.log"
        self.procs: list[subprocess.Popen[bytes]] = []
        shared_home = root / "home"
        for i in range(count):
            home = root / f"host-{i}" if url else shared_home
            home.mkdir(exist_ok=True)
            env = {
                **os.environ,
                "MILLSTREAM_HOME": str(home),
                "EXEC_LOG": str(self.log),
                "MILLSTREAM_SERVE_POLL_INTERVAL": "0.05",
                "MILLSTREAM_SERVE_SHUTDOWN_GRACE_SECONDS": "1",
                "MILLSTREAM_LOGGING_LEVEL": "WARNING",
            }
            env.pop("MILLSTREAM_DATABASE_URL", None)
            if url:
                env["MILLSTREAM_DATABASE_URL"] = url
            out = open(root / f"worker-{i}.log", "wb")
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, str(script), which], env=env, stdout=out, stderr=out
                )
            )

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _rows(sql: str, *params: Any) -> list[Any]:
    from millstream._engine.settings import get_current_settings
    from millstream._engine.store import get_store

    store = get_store(get_current_settings().database_path)
    return [tuple(r) for r in asyncio.run(store.fetchall_sql(sql, params))]


def _wait(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition not reached in time")
        time.sleep(0.05)


def _trigger(which: str, count: int) -> list[uuid.UUID]:
    from millstream.deployments import run_deployment

    params = (lambda i: {"n": i}) if which == "counted" else (lambda i: {})
    return [
        run_deployment(f"{which}/{which}", parameters=params(i), timeout=0).id for i in range(count)
    ]


def _apply(which: str) -> None:
    from millstream import flow

    @flow(name=which)
    def placeholder(n: int = 0) -> None:
        return None

    placeholder.to_deployment(which).apply()


def throughput(url: str | None, runs: int, workers: int = 2) -> float:
    """Runs per second that ``workers`` processes complete, queued runs waiting for them."""
    root = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    _use(url, root / "home")
    (root / "home").mkdir(exist_ok=True)
    _apply("trivial")
    _trigger("trivial", runs)  # queued first: the figure is the workers' pace alone
    pool = Workers(url, root, "trivial", workers)
    try:
        done = "SELECT count(*) FROM flow_run WHERE state_type = 'COMPLETED'"
        _wait(lambda: _rows(done)[0][0] >= runs, timeout=600)
    finally:
        pool.stop()
    ((first, last),) = _rows("SELECT min(start_time), max(end_time) FROM flow_run")
    return runs / ((last - first) / 1e6)


def exactly_once(url: str, runs: int, workers: int = 3) -> tuple[int, int]:
    """(duplicates, missing) among ``runs`` runs triggered while ``workers`` serve them."""
    root = Path(tempfile.mkdtemp(prefix="bench-once-"))
    _use(url, root / "home")
    (root / "home").mkdir(exist_ok=True)
    _apply("counted")
    pool = Workers(url, root, "counted", workers)
    try:
        ids = {str(i) for i in _trigger("counted", runs)}
        done = "SELECT count(*) FROM flow_run WHERE state_type = 'COMPLETED'"
        _wait(lambda: _rows(done)[0][0] >= runs, timeout=600)
    finally:
        pool.stop()
    executions = Counter(pool.log.read_text().split())
    duplicates = sum(c - 1 for c in executions.values() if c > 1)
    missing = len(ids - set(executions))
    hosts = len(_rows("SELECT DISTINCT hostname, pid FROM flow_run"))
    print(f"   ({hosts} worker processes took runs)")
    return duplicates, missing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2_000, help="P1 tasks per flow")
    parser.add_argument("--reps", type=int, default=5, help="P1 repetitions")
    parser.add_argument("--runs", type=int, default=2_000, help="P2 queued runs")
    parser.add_argument("--once", type=int, default=1_000, help="P3 triggered runs")
    args = parser.parse_args()
    with pg_server.running(fast=False) as server:
        per_task(server, args.tasks, args.reps)
        pg = throughput(server.fresh_url(), args.runs)
        lite = throughput(None, args.runs)
        print(
            f"P2 2 workers on one database, {args.runs} queued trivial runs: postgres "
            f"{pg:.0f} runs/s (target >= 200) | {'ok' if pg >= 200 else 'MISSED'}; sqlite "
            f"{lite:.0f} runs/s"
        )
        duplicates, missing = exactly_once(server.fresh_url(), args.once)
        verdict = "ok" if duplicates == missing == 0 else "MISSED"
        print(
            f"P3 {args.once} triggered runs, 3 workers on postgres: {duplicates} duplicates, "
            f"{missing} missing | {verdict}"
        )
        from millstream._engine.store import close_all

        close_all()


if __name__ == "__main__":
    main()
