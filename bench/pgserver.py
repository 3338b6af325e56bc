"""The PostgreSQL server of the store benchmarks: the tests' own server, restarted with a deployment's durability.

tests/support/postgres.py starts Debian's PostgreSQL from initdb in a temporary folder on 127.0.0.1 (as
root, through runuser as the `postgres` user) with fsync off, which is right for tests and flattering for
a benchmark. Here the same server is restarted with the settings a deployment runs:

  full   fsync on, synchronous_commit on: each commit waits for its WAL to reach the disk (the default,
         what a real server has);
  async  fsync on, synchronous_commit off: a commit returns before its WAL is flushed (a power cut may
         lose the last few hundred ms, never corrupts), the durability of the SQLite store, which runs
         in WAL mode with synchronous=NORMAL;
  none   fsync off, as the tests run it (a crash may corrupt the cluster): what the disk costs.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402

from tests.support.postgres import PostgresServer  # noqa: E402

DURABILITY = {"full": ("on", "on"), "async": ("on", "off"), "none": ("off", "off")}  # fsync, synchronous_commit


def start(durability: str = "full") -> PostgresServer:
    """A private server on 127.0.0.1 with the given durability; stop() removes it."""
    fsync, commit = DURABILITY[durability]
    server = PostgresServer()
    try:
        # pg_ctl restart with new -o options: the command line wins over postgresql.conf (and drops the -F)
        server._run("pg_ctl", "-D", str(server.data), "-l", str(server.root / "server.log"), "-w", "-t", "120",
                    "-o", f"-h 127.0.0.1 -p {server.port} -k {server.data} -c max_connections=200"
                          f" -c fsync={fsync} -c synchronous_commit={commit}", "restart")
    except BaseException:
        server.stop()
        raise
    return server


def describe(server: PostgresServer) -> str:
    """One line naming the server's version and the settings that decide what a commit costs."""
    with psycopg.connect(server.url, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        shown = {name: conn.execute(f"SHOW {name}").fetchone()[0]
                 for name in ("fsync", "synchronous_commit", "wal_sync_method", "shared_buffers")}
    return f"PostgreSQL {version} on 127.0.0.1 (same machine): " + ", ".join(f"{k}={v}" for k, v in shown.items())
