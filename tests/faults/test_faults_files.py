"""The database file under faults: a damaged page is detected with an error naming the file
and the way out (``millstream db check``, restore), printed by the CLI without a traceback;
a read-only database or folder can still be read by the client and ``millstream runs ls``."""

from __future__ import annotations

import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from fault_tools import Processes

import millstream._engine.store as store_module
from millstream import flow, task
from millstream.exceptions import StoreError

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "millstream.cli"]


def _some_runs(n: int = 30) -> None:
    @task
    def t(i: int) -> int:
        return i

    @flow
    def f(i: int) -> int:
        return t(i) + t(i + 1)

    for i in range(n):
        f(i)
    store_module.close_all()  # the last connection checkpoints the WAL into the file


def _damage(path: Path) -> None:
    page = sqlite3.connect(path).execute("PRAGMA page_size").fetchone()[0]
    size = path.stat().st_size
    assert size >= 6 * page
    with path.open("r+b") as f:  # garbage over a page in the middle of the tables
        f.seek((size // page // 2) * page)
        f.write(bytes(range(256)) * (page // 256))


def test_a_damaged_page_is_named_with_the_way_out_and_the_cli_prints_no_traceback(
    db_path: Path, tmp_path: Path, procs: Processes, monkeypatch: pytest.MonkeyPatch
) -> None:
    _some_runs()
    copy = tmp_path / "copy.db"
    shutil.copy(db_path, copy)
    _damage(copy)
    env = {"MILLSTREAM_DATABASE_PATH": str(copy)}
    script = procs.script("cli.py", "from millstream.cli import main\nraise SystemExit(main())\n")
    code, out = procs.run(script, "runs", "ls", **env)
    assert code != 0
    assert "Traceback" not in out
    assert str(copy) in out and "millstream db check" in out and "restore" in out
    code, out = procs.run(script, "db", "check", **env)
    assert code == 1 and "is damaged" in out and "Traceback" not in out
    # The untouched original checks clean.
    code, out = procs.run(script, "db", "check", MILLSTREAM_DATABASE_PATH=str(db_path))
    assert code == 0 and out.strip().endswith(": ok")
    # A flow call against the damaged file raises the same clear error.
    monkeypatch.setenv("MILLSTREAM_DATABASE_PATH", str(copy))

    @flow
    def later() -> int:
        return 1

    with pytest.raises(StoreError, match="millstream db check"):
        later()


READER = """
from millstream import get_client
with get_client(sync_client=True) as client:
    runs = client.read_flow_runs()
print("runs", len(runs))
"""


def _read_only_command(home: Path, argv: list[str]) -> list[str] | None:
    """``argv`` run with ``home`` read-only: a read-only bind mount in a mount namespace of
    its own when root (root ignores file modes), else plain file modes (set by the caller)."""
    if os.geteuid() != 0:
        return argv
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    quoted = " ".join(shlex.quote(a) for a in argv)
    mount = f"mount --bind -o ro {shlex.quote(str(home))} {shlex.quote(str(home))}"
    probe = subprocess.run(
        [unshare, "-m", "sh", "-c", mount], capture_output=True, text=True, timeout=30
    )
    if probe.returncode != 0:  # an unprivileged container: no mount namespaces
        return None
    return [unshare, "-m", "sh", "-c", f"{mount} && exec {quoted}"]


def test_a_read_only_database_folder_can_still_be_read(
    db_path: Path, tmp_path: Path, procs: Processes, millstream_home: Path
) -> None:
    _some_runs(5)
    for extra in millstream_home.glob("millstream.db-*"):
        extra.unlink()  # a cleanly closed database: no WAL files beside it
    script = procs.script("reader.py", READER)
    listing_cmd = _read_only_command(millstream_home, [*CLI, "runs", "ls", "--json"])
    client_cmd = _read_only_command(millstream_home, [sys.executable, str(script)])
    if listing_cmd is None or client_cmd is None:
        pytest.skip("no way to make a folder read-only for root here (no unshare)")
    modes = [(p, p.stat().st_mode) for p in [millstream_home, *millstream_home.iterdir()]]
    for p, _mode in modes:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        listing = subprocess.run(
            listing_cmd, env=procs.env, capture_output=True, text=True, timeout=60
        )
        client = subprocess.run(
            client_cmd, env=procs.env, capture_output=True, text=True, timeout=60
        )
    finally:
        for p, mode in modes:
            p.chmod(mode)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.count('"flow_name"') == 5
    assert client.returncode == 0, client.stderr
    assert "runs 5" in client.stdout
    assert not list(millstream_home.glob("millstream.db-*"))  # nothing was written there
