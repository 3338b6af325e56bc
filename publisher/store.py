"""The SQLite store (WAL): articles, feed state, editions, subscribers, suppression, ledger, leases.

One file holds everything a run needs to resume. Writes happen in short IMMEDIATE transactions so a
second process (a send, the scheduler, `publisher serve`) waits briefly instead of failing.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import re
import socket
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Iterator

from publisher.errors import ConfigError, DiskFullError, LockedError, PublisherError
from publisher.models import Article
from publisher.tables import migrate


def iso(dt: datetime) -> str:
    """Aware datetime -> ISO 8601 in UTC (sortable as text)."""
    return dt.astimezone(timezone.utc).isoformat(timespec="seconds")


def from_iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


@dataclass
class UpsertCounts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0


class Store:
    """A connection to the SQLite file; create the folder and schema on first use."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.is_dir():
            raise ConfigError(f"store {self.path}: is a folder, not an SQLite file",
                              hint="set [publisher].store in settings.toml to a file path like 'var/publisher.sqlite3'")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"store {self.path}: cannot open ({exc})", hint="check [publisher].store in settings.toml") from None
        self.conn.row_factory = sqlite3.Row
        self._locks: dict[str, int] = {}  # lease name -> the descriptor holding its flock
        self._set_up()

    def _set_up(self) -> None:
        # Two processes creating the same new store at once (two schedulers started together) can get
        # SQLITE_BUSY from the switch to WAL, which ignores the busy timeout: retry for a while.
        deadline = time.monotonic() + 30
        while True:
            try:
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")
                self.conn.execute("PRAGMA foreign_keys=ON")
                migrate(self.conn)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise ConfigError(f"store {self.path}: cannot use it ({exc})",
                                      hint="check [publisher].store in settings.toml") from None
                if time.monotonic() > deadline:
                    raise ConfigError(f"store {self.path}: still locked by another process after 30 s",
                                      hint="see 'publisher status' for who holds it, then retry") from None
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                time.sleep(0.05)
            except sqlite3.DatabaseError as exc:  # "file is not a database": garbage, or another format
                self.conn.close()
                raise ConfigError(f"store {self.path}: not an SQLite database ({exc}); it was left as it is",
                                  hint="point [publisher].store in settings.toml at another file, or move this one"
                                       " aside and rerun 'publisher fetch' to start a new store") from None

    def close(self) -> None:
        for name in list(self._locks):
            self.release_lease(name)
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; rolled back on any exception. A full disk raises DiskFullError."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            if "full" in str(exc) or "disk I/O error" in str(exc):  # SQLITE_FULL; SQLITE_IOERR from a failed write
                raise DiskFullError(f"disk full: cannot write the store {self.path} ({exc})",
                                    hint="free space on that disk, then rerun the same command") from None
            raise

    # -- articles -------------------------------------------------------------------------------

    def upsert_articles(self, articles: Iterable[Article], now: datetime) -> UpsertCounts:
        """Insert new articles, update edited ones in place (same id or same link), count the rest."""
        counts = UpsertCounts()
        stamp = iso(now)
        with self.transaction() as db:
            for a in articles:
                h = a.content_hash()
                row = db.execute("SELECT id, content_hash FROM articles WHERE id = ? OR link = ? LIMIT 1",
                                 (a.id, a.link)).fetchone()
                values = (a.link, a.title, a.summary, a.summary_html, iso(a.published), a.source, a.image,
                          a.author, _categories_json(tuple(a.categories)), h)
                if row is None:
                    db.execute("INSERT INTO articles (link, title, summary, summary_html, published, source, image,"
                               " author, categories, content_hash, id, first_seen, updated_at)"
                               " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", (*values, a.id, stamp, stamp))
                    counts.new += 1
                elif row["content_hash"] == h:
                    counts.unchanged += 1
                else:
                    db.execute("UPDATE articles SET link=?, title=?, summary=?, summary_html=?, published=?, source=?,"
                               " image=?, author=?, categories=?, content_hash=?, updated_at=? WHERE id=?",
                               (*values, stamp, row["id"]))
                    counts.updated += 1
        return counts

    def articles_between(self, start: datetime, end: datetime) -> list[Article]:
        """Articles published in [start, end), newest first."""
        rows = self.conn.execute("SELECT * FROM articles WHERE published >= ? AND published < ?"
                                 " ORDER BY published DESC, id", (iso(start), iso(end))).fetchall()
        return [_article(r) for r in rows]

    def article_count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM articles").fetchone()[0]

    # -- feed state -----------------------------------------------------------------------------

    def feed_state(self, source: str) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM feed_state WHERE source = ?", (source,)).fetchone()

    def save_feed_state(self, source: str, *, now: datetime, result: str, ok: bool,
                        etag: str | None = None, last_modified: str | None = None, keep_validators: bool = False) -> None:
        """Record a fetch; keep_validators leaves the stored ETag/Last-Modified as they were (304, error)."""
        with self.transaction() as db:
            if keep_validators:
                db.execute("INSERT INTO feed_state (source, last_fetch, last_result, ok) VALUES (?,?,?,?)"
                           " ON CONFLICT(source) DO UPDATE SET last_fetch=excluded.last_fetch,"
                           " last_result=excluded.last_result, ok=excluded.ok", (source, iso(now), result, int(ok)))
            else:
                db.execute("INSERT INTO feed_state (source, etag, last_modified, last_fetch, last_result, ok)"
                           " VALUES (?,?,?,?,?,?) ON CONFLICT(source) DO UPDATE SET etag=excluded.etag,"
                           " last_modified=excluded.last_modified, last_fetch=excluded.last_fetch,"
                           " last_result=excluded.last_result, ok=excluded.ok",
                           (source, etag, last_modified, iso(now), result, int(ok)))

    def feed_states(self) -> list[sqlite3.Row]:
        return self.conn.execute("SELECT * FROM feed_state ORDER BY source").fetchall()

    # -- editions -------------------------------------------------------------------------------

    def edition_record(self, campaign: str, edition_id: str) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM editions WHERE campaign = ? AND edition_id = ?",
                                 (campaign, edition_id)).fetchone()

    def freeze_edition(self, campaign: str, edition_id: str, content_hash: str, rendered_json: str, now: datetime) -> sqlite3.Row:
        """Record the rendered edition once; later calls return the first frozen record unchanged."""
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO editions (campaign, edition_id, status, content_hash, rendered, created_at)"
                       " VALUES (?,?,?,?,?,?)", (campaign, edition_id, "frozen", content_hash, rendered_json, iso(now)))
            # a skipped edition that is later sent on purpose (--edition) becomes frozen
            db.execute("UPDATE editions SET status='frozen', reason=NULL, content_hash=?, rendered=?"
                       " WHERE campaign=? AND edition_id=? AND status='skipped'",
                       (content_hash, rendered_json, campaign, edition_id))
        return self.edition_record(campaign, edition_id)

    def record_skip(self, campaign: str, edition_id: str, reason: str, now: datetime) -> None:
        """Record that an edition will not go out, and why (thin week, missed slot)."""
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO editions (campaign, edition_id, status, reason, created_at)"
                       " VALUES (?,?,?,?,?)", (campaign, edition_id, "skipped", reason, iso(now)))

    def edition_records(self, campaign: str | None = None) -> list[sqlite3.Row]:
        q = "SELECT campaign, edition_id, status, reason, content_hash, created_at FROM editions"
        args: tuple = ()
        if campaign:
            q += " WHERE campaign = ?"
            args = (campaign,)
        return self.conn.execute(q + " ORDER BY campaign, edition_id", args).fetchall()

    # -- leases ---------------------------------------------------------------------------------
    #
    # A lease is an flock() on a file beside the store, held for as long as the holding process lives:
    # the kernel drops it when the process exits or is killed, and no clock (an NTP step, a VM resume,
    # a catch-up run with --now) can make it expire. The `leases` row only says who holds it, for
    # messages and `publisher status`.

    def _lock_file(self, name: str) -> Path:
        return self.path.parent / f"{self.path.name}.locks" / (re.sub(r"[^A-Za-z0-9._-]", "_", name) + ".lock")

    def acquire_lease(self, name: str, now: datetime) -> None:
        """Take the named lease or raise LockedError naming its holder; a dead holder's lease is free."""
        path = self._lock_file(name)
        while True:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise ConfigError(f"store {self.path}: cannot create the lock file {path} ({exc.strerror or exc})",
                                  hint="check the permissions of the store's folder") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                row = self.lease(name)
                who = f"{row['holder']} since {row['acquired_at']}" if row else "another process"
                raise LockedError(f"{name} is held by {who}",
                                  hint="wait for it to finish, or stop that process (its lease ends with it)") from None
            # the holder we waited for may have removed the file as it let go: lock the file that is there
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        holder = f"pid {os.getpid()} on {socket.gethostname()}"
        try:
            with self.transaction() as db:
                db.execute("INSERT INTO leases (name, holder, pid, host, acquired_at, expires_at) VALUES (?,?,?,?,?,'')"
                           " ON CONFLICT(name) DO UPDATE SET holder=excluded.holder, pid=excluded.pid, host=excluded.host,"
                           " acquired_at=excluded.acquired_at, expires_at=''",
                           (name, holder, os.getpid(), socket.gethostname(), iso(now)))
        except BaseException:
            os.close(fd)
            raise
        self._locks[name] = fd

    def release_lease(self, name: str) -> None:
        fd = self._locks.pop(name, None)
        if fd is None:
            return
        try:
            with self.transaction() as db:
                db.execute("DELETE FROM leases WHERE name = ? AND pid = ? AND host = ?", (name, os.getpid(), socket.gethostname()))
        except PublisherError:
            pass  # a full disk: the row says who held it last; the lock itself goes with the descriptor
        finally:
            try:
                self._lock_file(name).unlink()  # while still locked: a waiter re-checks which file it locked
            except OSError:
                pass
            os.close(fd)

    def lease(self, name: str) -> sqlite3.Row | None:
        """Who holds the named lease, or None when nobody does (a row left by a dead holder is not a lease)."""
        row = self.conn.execute("SELECT * FROM leases WHERE name = ?", (name,)).fetchone()
        if row is None or name in self._locks:
            return row
        try:
            fd = os.open(self._lock_file(name), os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return row  # held: the row names its holder
        finally:
            os.close(fd)  # also drops the shared lock we may just have taken
        return None

    # -- dispatch runs and scheduler state ---------------------------------------------------------

    def start_run(self, edition_key: str, channel: str, now: datetime) -> int:
        """Record that a channel started sending an edition; returns the run's id for finish_run."""
        start = now.astimezone(timezone.utc)
        with self.transaction() as db:
            last = db.execute("SELECT max(started_at) FROM runs WHERE edition_key=? AND channel=?",
                              (edition_key, channel)).fetchone()[0]
            if last and from_iso(last) >= start:  # a fixed --now: keep every run, in order
                start = from_iso(last) + timedelta(microseconds=1)
            cur = db.execute("INSERT INTO runs (edition_key, channel, started_at) VALUES (?,?,?)",
                             (edition_key, channel, start.isoformat(timespec="microseconds")))
            return cur.lastrowid

    def finish_run(self, run_id: int, now: datetime, seconds: float, outcome: str, summary: str = "") -> None:
        with self.transaction() as db:
            db.execute("UPDATE runs SET finished_at=?, seconds=?, outcome=?, summary=? WHERE rowid=?",
                       (iso(now), seconds, outcome, summary, run_id))

    def runs(self, edition_key: str | None = None, channel: str | None = None) -> list[sqlite3.Row]:
        """Dispatch runs, oldest first, optionally of one edition key and channel."""
        q, args = "SELECT rowid AS id, * FROM runs WHERE 1=1", []
        if edition_key:
            q += " AND edition_key = ?"
            args.append(edition_key)
        if channel:
            q += " AND channel = ?"
            args.append(channel)
        return self.conn.execute(q + " ORDER BY started_at, rowid", args).fetchall()

    def last_runs(self, campaign: str) -> list[sqlite3.Row]:
        """The latest run of each channel of a campaign (any edition)."""
        return self.conn.execute(
            "SELECT rowid AS id, * FROM runs r WHERE edition_key LIKE ? ESCAPE '\\' AND started_at ="
            " (SELECT max(started_at) FROM runs WHERE channel = r.channel AND edition_key LIKE ? ESCAPE '\\')"
            " ORDER BY channel", (_like_prefix(campaign), _like_prefix(campaign))).fetchall()

    def delivery_channels(self, edition_key: str) -> list[str]:
        """The ledger channels that have rows for one edition, in name order.

        One step down the (edition_key, channel, ...) index per channel: SELECT DISTINCT would read every
        row of a million-row edition to find its two or three channels.
        """
        return [r[0] for r in self.conn.execute(
            "WITH RECURSIVE c(name) AS (SELECT (SELECT min(channel) FROM deliveries WHERE edition_key = ?1)"
            " UNION ALL SELECT (SELECT min(channel) FROM deliveries WHERE edition_key = ?1 AND channel > c.name)"
            " FROM c WHERE c.name IS NOT NULL) SELECT name FROM c WHERE name IS NOT NULL", (edition_key,))]

    def open_deliveries(self, edition_key: str, now: datetime) -> dict[str, tuple[int, int]]:
        """Per ledger channel: (planned or sending rows, of which ready now, i.e. no retry time ahead).

        Counted on the indexes, channel by channel: the open rows and those held back (deliveries_waiting),
        never a read of the edition's sent rows.
        """
        out = {}
        for channel in self.delivery_channels(edition_key):
            total, waiting = self.conn.execute(
                "SELECT (SELECT count(*) FROM deliveries WHERE edition_key = ?1 AND channel = ?2"
                " AND state IN ('planned', 'sending')), (SELECT count(*) FROM deliveries WHERE edition_key = ?1"
                " AND channel = ?2 AND state = 'planned' AND not_before > ?3)", (edition_key, channel, iso(now))).fetchone()
            if total:
                out[channel] = (total, total - waiting)
        return out

    def suppress(self, rows: Iterable[tuple[str, str]], reason: str, now: datetime) -> None:
        """Add (address, detail) pairs to the suppression list; an address already there keeps its first reason."""
        with self.transaction() as db:
            db.executemany("INSERT OR IGNORE INTO suppression (email, reason, detail, created_at) VALUES (?,?,?,?)",
                           [(email, reason, detail, iso(now)) for email, detail in rows])

    def get_state(self, name: str) -> str | None:
        row = self.conn.execute("SELECT value FROM scheduler_state WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def set_state(self, name: str, value: str, now: datetime) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO scheduler_state (name, value, updated_at) VALUES (?,?,?) ON CONFLICT(name)"
                       " DO UPDATE SET value=excluded.value, updated_at=excluded.updated_at", (name, value, iso(now)))


@functools.lru_cache(maxsize=256)  # a feed repeats a few category sets on every article
def _categories_json(categories: tuple[str, ...]) -> str:
    return json.dumps(list(categories), ensure_ascii=False)


def _like_prefix(campaign: str) -> str:
    return campaign.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"


def _article(r: sqlite3.Row) -> Article:
    return Article(id=r["id"], link=r["link"], title=r["title"], summary=r["summary"], summary_html=r["summary_html"],
                   published=from_iso(r["published"]), source=r["source"], image=r["image"], author=r["author"],
                   categories=tuple(json.loads(r["categories"])))
