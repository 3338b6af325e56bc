"""Leases: a named lock (a send of one edition, the scheduler) held for as long as the holding process lives.

On SQLite a lease is an flock() on a file beside the store: the kernel drops it when the process exits or
is killed. On PostgreSQL it is a session-level advisory lock on the store's own connection: the server
drops it when that session ends (the process exits, is killed, or its machine is lost and the connection
times out). Either way no clock (an NTP step, a VM resume, a catch-up run with --now) can make it expire.
The `leases` row only says who holds it, for messages and `publisher status`.

A lease may also be taken shared: several senders that joined one edition (`publisher send --join`) each
hold `send:<edition>` shared, and whoever needs it alone (a send without --join, `subscribers forget`)
cannot take it while any of them lives. With several holders the row names the last one that came.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import sqlite3
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

from publisher.errors import ConfigError, LockedError, PublisherError
from publisher.store.backend import SQLITE
from publisher.store.isotime import from_iso, iso


@dataclass(frozen=True)
class Lease:
    """Who holds a named lease (the OS lock is the lease; this says who has it, for messages)."""

    name: str
    holder: str  # "pid 1234 on host"
    pid: int
    host: str
    acquired_at: datetime


class Leases:
    """The lease half of Store: needs its `path` (SQLite), `conn`, `dialect`, `transaction()` and a `_locks` dict."""

    path: Path
    conn: sqlite3.Connection
    dialect: str
    _locks: dict[str, int]
    _shared: set[str]
    transaction: Callable[[], AbstractContextManager[sqlite3.Connection]]

    def _lock_file(self, name: str) -> Path:
        return self.path.parent / f"{self.path.name}.locks" / (re.sub(r"[^A-Za-z0-9._-]", "_", name) + ".lock")

    def _advisory(self, function: str, name: str) -> bool:
        # hashtextextended: a 64-bit key from the name; a collision only makes two leases exclude each other
        return bool(self.conn.execute(f"SELECT {function}(hashtextextended(?, 0))", (name,)).fetchone()[0])

    def _locked(self, name: str) -> None:
        held = self.lease(name)
        who = f"{held.holder} since {iso(held.acquired_at)}" if held else "another process"
        raise LockedError(f"{name} is held by {who}",
                          hint="wait for it to finish, or stop that process (its lease ends with it)") from None

    def acquire_lease(self, name: str, now: datetime, *, shared: bool = False) -> None:
        """Take the named lease (alone, or `shared` with other shared holders) or raise LockedError naming
        its holder; a dead holder's lease is free."""
        if self.dialect != SQLITE:
            mode = "_shared" if shared else ""
            if name in self._locks or not self._advisory(f"pg_try_advisory_lock{mode}", name):
                self._locked(name)
            try:
                self._record_holder(name, now)
            except BaseException:
                self._advisory(f"pg_advisory_unlock{mode}", name)
                raise
            self._locks[name] = -1
            if shared:
                self._shared.add(name)
            return
        if name in self._locks:
            self._locked(name)
        path = self._lock_file(name)
        while True:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise ConfigError(f"store {self.path}: cannot create the lock file {path} ({exc.strerror or exc})",
                                  hint="check the permissions of the store's folder") from None
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                self._locked(name)
            # the holder we waited for may have removed the file as it let go: lock the file that is there
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        try:
            self._record_holder(name, now)
        except BaseException:
            os.close(fd)
            raise
        self._locks[name] = fd
        if shared:
            self._shared.add(name)

    def _record_holder(self, name: str, now: datetime) -> None:
        holder = f"pid {os.getpid()} on {socket.gethostname()}"
        with self.transaction() as db:
            db.execute("INSERT INTO leases (name, holder, pid, host, acquired_at, expires_at) VALUES (?,?,?,?,?,'')"
                       " ON CONFLICT(name) DO UPDATE SET holder=excluded.holder, pid=excluded.pid, host=excluded.host,"
                       " acquired_at=excluded.acquired_at, expires_at=''",
                       (name, holder, os.getpid(), socket.gethostname(), iso(now)))

    def release_lease(self, name: str) -> None:
        fd = self._locks.pop(name, None)
        if fd is None:
            return
        shared = name in self._shared
        self._shared.discard(name)
        try:
            if not shared:  # other holders of a shared lease may still be there: the row stays (lease() checks the lock)
                with self.transaction() as db:
                    db.execute("DELETE FROM leases WHERE name = ? AND pid = ? AND host = ?", (name, os.getpid(), socket.gethostname()))
        except PublisherError:
            pass  # a full disk: the row says who held it last; the lock itself goes with the descriptor
        finally:
            if fd < 0:
                self._advisory("pg_advisory_unlock_shared" if shared else "pg_advisory_unlock", name)
            elif shared:
                # the last holder removes the file: taking it alone (after letting go of our share) proves nobody
                # else holds it; otherwise another holder still uses the file, which must stay
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    self._lock_file(name).unlink()
                except OSError:
                    pass
                os.close(fd)
            else:
                try:
                    self._lock_file(name).unlink()  # while still locked: a waiter re-checks which file it locked
                except OSError:
                    pass
                os.close(fd)

    def last_holder(self, name: str) -> Lease | None:
        """Who took the named lease last, held or not (a dead sender's row says where it ran)."""
        r = self.conn.execute("SELECT * FROM leases WHERE name = ?", (name,)).fetchone()
        return Lease(r["name"], r["holder"], r["pid"], r["host"], from_iso(r["acquired_at"])) if r else None

    def lease(self, name: str) -> Lease | None:
        """Who holds the named lease, or None when nobody does (a row left by a dead holder is not a lease)."""
        r = self.conn.execute("SELECT * FROM leases WHERE name = ?", (name,)).fetchone()
        row = Lease(r["name"], r["holder"], r["pid"], r["host"], from_iso(r["acquired_at"])) if r else None
        if row is None or name in self._locks:
            return row
        if self.dialect != SQLITE:  # free if we can take it (and give it straight back)
            if not self._advisory("pg_try_advisory_lock", name):
                return row
            self._advisory("pg_advisory_unlock", name)
            return None
        try:
            fd = os.open(self._lock_file(name), os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while anyone holds it, alone or shared
        except BlockingIOError:
            return row  # held: the row names its holder
        finally:
            os.close(fd)  # also drops the lock we may just have taken
        return None
