"""A PostgreSQL server of a test's own on 127.0.0.1, which the test may stop and start again
(scripts/with-postgres, in Python). PostgreSQL refuses to run as root, so as root the server
runs as the `postgres` system user."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text


def find_bindir() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian's layout), or None."""
    found = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()]

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", path.parent.name))

    return max(found, key=version, default=None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PgServer:
    def __init__(self, bindir: Path, data: Path, port: int) -> None:
        self.bindir = bindir
        self.data = data
        self.port = port
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n"
                               f"{done.stdout}{done.stderr}\n{self.log()}")

    def log(self) -> str:
        path = self.data / "server.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E",
                  "UTF8", "--locale=C.UTF-8")

    def start(self) -> None:
        """Start it (again, on the same port) and wait until it takes connections."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.data / "server.log"), "-w",
                  "-o", f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.data} "
                  "-c fsync=off -c full_page_writes=off", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop it: `fast` ends every session (as an operator's restart does)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def create_database(self, name: str) -> str:
        """A new empty database; returns its URL."""
        admin = create_engine(self.url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            admin.dispose()
        return self.url.rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def postgres_server(bindir: Path) -> Iterator[PgServer]:
    """A fresh server in a temporary folder on a free port; removed afterwards."""
    # Not under pytest's tmp_path: that is private to root, and the server runs as postgres.
    data = Path(tempfile.mkdtemp(prefix="tocsin-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, user="postgres")
    server = PgServer(bindir, data, free_port())
    try:
        server.init()
        server.start()
        yield server
    finally:
        with contextlib.suppress(RuntimeError):  # already stopped, or never started
            server.stop("immediate")
        shutil.rmtree(data, ignore_errors=True)
