"""The real `publisher schedule` process for the scheduler tests: start it, watch its store, stop it."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import psycopg

from support.email_project import connect


class Proc:
    """A `publisher ... ARGS` subprocess whose output is collected in files (no pipe can fill up)."""

    def __init__(self, project, *args: str, env: dict[str, str] | None = None, name: str = "proc"):
        self.project = project
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")} | project.env
        full_env.update(env or {})
        n = len(list(project.root.glob(f"{name}*.out")))
        self.out_path = project.root / f"{name}{n}.out"
        self.err_path = project.root / f"{name}{n}.err"
        self._out, self._err = self.out_path.open("wb"), self.err_path.open("wb")
        self.popen = subprocess.Popen([sys.executable, "-m", "publisher", "--settings", str(project.settings), *args],
                                      cwd=project.root, env=full_env, stdout=self._out, stderr=self._err)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.popen.wait(timeout)
        finally:
            self._close()

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM, then wait for the graceful exit."""
        self.popen.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.wait()

    def _close(self) -> None:
        for fh in (self._out, self._err):
            if not fh.closed:
                fh.close()

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(encoding="utf-8", errors="replace")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(encoding="utf-8", errors="replace")


def store_path(project) -> Path:
    return project.root / "var" / "publisher.sqlite3"


def query(project, sql: str, args: tuple = ()) -> list[tuple]:
    """Read the store from outside, as an operator's sqlite3 shell (or psql) would (never blocks the writer)."""
    if project.store_url:
        db = connect(project)
        try:
            return [tuple(r) for r in db.execute(sql, args).fetchall()]
        except psycopg.errors.UndefinedTable:  # the schema is not there yet
            return []
        finally:
            db.close()
    path = store_path(project)
    if not path.exists():
        return []
    db = sqlite3.connect(path, timeout=30)
    try:
        return db.execute(sql, args).fetchall()
    except sqlite3.OperationalError:  # the schema is not there yet
        return []
    finally:
        db.close()


def wait_for(condition: Callable[[], object], timeout: float = 60, what: str = "condition",
             procs: tuple[Proc, ...] = ()) -> object:
    """Poll until `condition()` is truthy; fail with the processes' stderr if it never is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    detail = "\n".join(f"--- {p.pid} stderr:\n{p.stderr[-3000:]}" for p in procs)
    raise AssertionError(f"timed out waiting for {what}\n{detail}")


def lease_holder(project) -> int | None:
    rows = query(project, "SELECT pid FROM leases WHERE name = 'scheduler'")
    return rows[0][0] if rows else None
