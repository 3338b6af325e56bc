"""A real PostgreSQL server for the tests: Debian's `postgresql`, initdb into a temporary folder, on 127.0.0.1.

Each server is private to the test session that starts it: its own data folder, a free port on loopback,
its Unix socket inside the data folder, trust authentication for the one local user. The system's own
cluster (if any) is never started or configured. PostgreSQL refuses to run as root, so as root the folder
is handed to Debian's `postgres` user and the server programs run as that user (runuser).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg

USER = "publisher"  # the superuser: trust, for the tests' own set-up
SENDER = "sender"  # what a deployment uses: a password (scram), given as PUBLISHER_STORE_PASSWORD
SENDER_PASSWORD = "pg-test-password-7f3a9c"


def bin_dir() -> Path | None:
    """The folder of initdb/pg_ctl: Debian keeps them out of PATH, under /usr/lib/postgresql/<version>/bin."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """initdb + pg_ctl start on 127.0.0.1; `url` is a postgresql:// URL; stop() removes everything."""

    def __init__(self) -> None:
        where = bin_dir()
        if where is None:
            raise RuntimeError("PostgreSQL is not installed: run ./scripts/test, which installs Debian's postgresql")
        self.bin = where
        self.root = Path(tempfile.mkdtemp(prefix="publisher-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", USER, "-A", "trust", "-E", "UTF8", "--no-sync",
                  "--locale=C.UTF-8")
        # the sender role must give its password over TCP; everything else stays trust
        hba = self.data / "pg_hba.conf"
        rules = f"host all {SENDER} 127.0.0.1/32 scram-sha-256\n"
        if self._as:
            subprocess.run([*self._as, "sh", "-c", f"printf '%s' '{rules}' | cat - {hba} > {hba}.new && mv {hba}.new {hba}"],
                           check=True, timeout=30)
        else:
            hba.write_text(rules + hba.read_text())
        # fsync off: a test server's data needs no crash safety, and it spares the shared disk
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t", "120",
                  "-o", f"-h 127.0.0.1 -p {self.port} -k {self.data} -F -c max_connections=200", "start")
        self.url = f"postgresql://{USER}@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {SENDER} LOGIN PASSWORD '{SENDER_PASSWORD}'")

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run([*self._as, str(self.bin / program), *args], capture_output=True, text=True,
                              timeout=180, cwd=self.root)
        if done.returncode:
            log = self.root / "server.log"
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stderr.strip()}"
                               + (f"\n{log.read_text(errors='replace')}" if log.exists() else ""))

    def create_database(self, name: str, owner: str = USER) -> str:
        """A fresh empty database on this server, owned by `owner`; returns its URL (for that user)."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" OWNER {owner}')
        return f"postgresql://{owner}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
