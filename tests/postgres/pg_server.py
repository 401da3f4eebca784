"""A throwaway PostgreSQL server for tests and benchmarks: initdb + pg_ctl in a temporary
directory, on a free port of 127.0.0.1, run as an unprivileged user when we are root (the
server refuses to run as root)."""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

# Users tried, in order, to own the server when running as root; .ci/run makes the first.
_USERS = ("millstream-pg", "postgres", "nobody")


def binaries() -> Path | None:
    """The directory holding initdb and pg_ctl, or None."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl", path=str(Path(found).parent)):
        return Path(found).parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "initdb").exists() and Path(candidate, "pg_ctl").exists():
            return Path(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _account() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in _USERS:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError(f"No unprivileged user to run PostgreSQL as (tried {', '.join(_USERS)})")


class Server:
    """A running server; ``url(schema)`` names a fresh schema of its one database."""

    def __init__(self, bindir: Path, fast: bool = True) -> None:
        self.bindir = bindir
        # Tests need no durability (fsync off); benchmarks keep fsync and drop only the wait
        # for each commit's flush, as SQLite's WAL with synchronous=NORMAL does.
        self.fast = fast
        self.root = Path(tempfile.mkdtemp(prefix="millstream-pg-"))
        self.data = self.root / "data"
        self.port = 0
        self.account = _account()

    def _run(self, *args: str) -> None:
        kwargs: dict[str, object] = {}
        if self.account is not None:
            kwargs = {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}
        done = subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            cwd=self.root,
            timeout=120,
            check=False,
            **kwargs,  # type: ignore[arg-type]
        )
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed: {done.stdout}{done.stderr}{tail}")

    def start(self) -> None:
        if self.account is not None:
            os.chown(self.root, self.account.pw_uid, self.account.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "millstream",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        for _ in range(5):
            self.port = _free_port()
            try:
                self._pg_start()
                return
            except RuntimeError:
                if "could not bind" not in (self.root / "server.log").read_text():
                    raise

    def _pg_start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
            "-c synchronous_commit=off -c max_connections=300"
        )
        if self.fast:
            options += " -c fsync=off -c full_page_writes=off"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.root / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )

    def pause(self) -> None:
        """Shut the server down (every connection cut), keeping its data and port."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        """Start the paused server again, on the same port."""
        self._pg_start()

    def stop(self) -> None:
        if not self.root.exists():
            return
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def base_url(self) -> str:
        # A password the server does not check (trust), so that masking it can be seen.
        return f"postgresql://millstream:secret-pw@127.0.0.1:{self.port}/postgres"

    def fresh_url(self) -> str:
        """A URL whose connections work in a new, empty schema of their own."""
        import psycopg

        schema = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.base_url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        return f"{self.base_url}?options=-csearch_path%3D{schema}"


@contextlib.contextmanager
def running(fast: bool = True) -> Iterator[Server]:
    """A server for the duration of the block; ``RuntimeError`` without server binaries."""
    bindir = binaries()
    if bindir is None:
        raise RuntimeError("No PostgreSQL server binaries (initdb, pg_ctl) found")
    server = Server(bindir, fast)
    try:
        server.start()
        yield server
    finally:
        server.stop()


_shared: Server | None = None


def shared() -> Server:
    """The process's one server, started on first use and stopped at exit (or by ``stop``):
    every conftest that needs it gets the same one."""
    global _shared
    if _shared is None:
        bindir = binaries()
        if bindir is None:
            raise RuntimeError("No PostgreSQL server binaries (initdb, pg_ctl) found")
        server = Server(bindir)
        atexit.register(server.stop)
        server.start()
        _shared = server
    return _shared
