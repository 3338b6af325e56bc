"""The SQLite store (WAL): articles, feed state, editions, subscribers, suppression, ledger, leases.

One file holds everything a run needs to resume. Writes happen in short IMMEDIATE transactions so a
second process (a send, the scheduler, `publisher serve`) waits briefly instead of failing.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from publisher.errors import ConfigError, DiskFullError
from publisher.models import Article
from publisher.store.backend import POSTGRESQL, SQLITE, BackendError, PgConnection, is_postgres_url, redact
from publisher.store.isotime import from_iso, iso
from publisher.store.leases import Leases
from publisher.store.migrations import MIGRATIONS, Migration, latest, open_schema, upgrade, version


ANALYZE_AFTER = 1000  # ledger rows planned at once that make PostgreSQL's planner look at the table again


@dataclass(frozen=True)
class FeedState:
    """The last fetch of one source: its validators (ETag, Last-Modified), when, and how it went."""

    source: str
    etag: str | None
    last_modified: str | None
    last_fetch: datetime | None
    last_result: str | None  # one line: "12 new, 3 updated, ..." or the error
    ok: bool


@dataclass(frozen=True)
class EditionRecord:
    """An edition that was frozen (rendered once, being sent) or skipped, and when."""

    campaign: str
    edition_id: str
    status: str  # "frozen" or "skipped"
    reason: str | None  # why it was skipped
    content_hash: str | None
    created_at: datetime
    rendered: str | None = None  # the frozen RenderedEdition as JSON (edition_record only)


@dataclass(frozen=True)
class Run:
    """One channel's dispatch of one edition: when it started and finished, and how it ended."""

    id: int
    edition_key: str
    channel: str
    started_at: datetime
    finished_at: datetime | None
    seconds: float | None  # measured on a monotonic clock (right even under --now)
    outcome: str | None  # ok | stopped | disabled: why | error: why | crashed: why
    summary: str | None


@dataclass
class UpsertCounts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0


class Store(Leases):
    """A connection to the SQLite file (create the folder and schema on first use) or to a PostgreSQL database."""

    def __init__(self, path: str | Path, *, password: str | None = None, check_schema: bool = True):
        """check_schema=False: connect only, for `publisher db`, which reads and upgrades the schema itself."""
        self._locks: dict[str, int] = {}  # lease name -> the descriptor holding its flock (-1: an advisory lock)
        self._shared: set[str] = set()  # the leases in _locks taken shared
        self._check_schema = check_schema
        if is_postgres_url(str(path)):
            self._open_postgres(str(path), password)
            return
        self.dialect, self.where, self._rowid = SQLITE, str(path), "rowid"
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
        self._set_up()

    def _open_postgres(self, url: str, password: str | None) -> None:
        # runs has an id column on PostgreSQL where SQLite has its rowid; leases are advisory locks (no path)
        self.dialect, self.where, self._rowid, self.path = POSTGRESQL, redact(url), "id", None
        try:
            self.conn = PgConnection(url, password=password)
            if self._check_schema:
                with self.conn.translated():
                    open_schema(self.conn, self.dialect, self.where)
        except BackendError as exc:
            raise ConfigError(f"store {self.where}: cannot use it ({exc})",
                              hint="check [publisher].store in settings.toml and PUBLISHER_STORE_PASSWORD") from None

    def _set_up(self) -> None:
        # Two processes creating the same new store at once (two schedulers started together) can get
        # SQLITE_BUSY from the switch to WAL, which ignores the busy timeout: retry for a while.
        deadline = time.monotonic() + 30
        while True:
            try:
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")
                self.conn.execute("PRAGMA foreign_keys=ON")
                if self._check_schema:
                    open_schema(self.conn, self.dialect, self.where)
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

    def schema_version(self) -> tuple[int | None, int]:
        """(this store's schema version, the latest this publisher knows); None for a new empty store."""
        return version(self.conn, self.dialect), latest()

    def upgrade(self, applied: Callable[[Migration], None] | None = None,
                migrations: Sequence[Migration] = MIGRATIONS) -> list[Migration]:
        """Apply the pending migrations, calling `applied` after each; returns them (none: up to date)."""
        try:
            with self.conn.translated() if self.dialect == POSTGRESQL else nullcontext():
                return upgrade(self.conn, self.dialect, self.where, migrations, applied)
        except (sqlite3.OperationalError, BackendError) as exc:
            raise ConfigError(f"store {self.where}: cannot upgrade it ({exc})",
                              hint="stop the other publisher processes using it, then rerun 'publisher db upgrade'") from None

    def close(self) -> None:
        for name in list(self._locks):
            self.release_lease(name)
        self.conn.close()

    def planned(self, rows: int) -> None:
        """After `rows` ledger rows were planned: on PostgreSQL, a large plan refreshes the table's statistics
        at once, so the first claims walk the key instead of the whole edition (autovacuum would do it later)."""
        if self.dialect != SQLITE and rows >= ANALYZE_AFTER:
            self.conn.execute("ANALYZE deliveries")

    def _in_turn(self, db, name: str) -> None:
        """Inside a transaction that reads, then writes what it read: one such transaction named `name` at a
        time until it ends. SQLite's BEGIN IMMEDIATE already runs every writer in turn; on PostgreSQL a
        transaction-scoped advisory lock does it for this name only."""
        if self.dialect != SQLITE:
            db.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (name,))

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
            self._in_turn(db, "articles")  # two fetches at once (two machines) would both insert a new article
            for a in articles:
                h = a.content_hash()
                row = db.execute("SELECT id, content_hash FROM articles WHERE id = ? OR link = ? LIMIT 1",
                                 (a.id, a.link)).fetchone()
                values = (a.link, a.title, a.summary, a.summary_html, iso(a.published), a.source, a.image,
                          a.thumbnail, a.author, _categories_json(tuple(a.categories)), h)
                if row is None:
                    db.execute("INSERT INTO articles (link, title, summary, summary_html, published, source, image,"
                               " thumbnail, author, categories, content_hash, id, first_seen, updated_at)"
                               " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", (*values, a.id, stamp, stamp))
                    counts.new += 1
                elif row["content_hash"] == h:
                    counts.unchanged += 1
                else:
                    db.execute("UPDATE articles SET link=?, title=?, summary=?, summary_html=?, published=?, source=?,"
                               " image=?, thumbnail=?, author=?, categories=?, content_hash=?, updated_at=? WHERE id=?",
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

    def feed_state(self, source: str) -> FeedState | None:
        row = self.conn.execute("SELECT * FROM feed_state WHERE source = ?", (source,)).fetchone()
        return _feed_state(row) if row else None

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

    def feed_states(self) -> list[FeedState]:
        return [_feed_state(r) for r in self.conn.execute("SELECT * FROM feed_state ORDER BY source")]

    # -- editions -------------------------------------------------------------------------------

    def edition_record(self, campaign: str, edition_id: str) -> EditionRecord | None:
        row = self.conn.execute("SELECT * FROM editions WHERE campaign = ? AND edition_id = ?",
                                (campaign, edition_id)).fetchone()
        return _edition(row) if row else None

    def freeze_edition(self, campaign: str, edition_id: str, content_hash: str, rendered_json: str, now: datetime) -> EditionRecord:
        """Record the rendered edition once; later calls return the first frozen record unchanged."""
        with self.transaction() as db:
            db.execute("INSERT INTO editions (campaign, edition_id, status, content_hash, rendered, created_at)"
                       " VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING", (campaign, edition_id, "frozen", content_hash, rendered_json, iso(now)))
            # a skipped edition that is later sent on purpose (--edition) becomes frozen
            db.execute("UPDATE editions SET status='frozen', reason=NULL, content_hash=?, rendered=?"
                       " WHERE campaign=? AND edition_id=? AND status='skipped'",
                       (content_hash, rendered_json, campaign, edition_id))
        return self.edition_record(campaign, edition_id)

    def record_skip(self, campaign: str, edition_id: str, reason: str, now: datetime) -> None:
        """Record that an edition will not go out, and why (thin week, missed slot)."""
        with self.transaction() as db:
            db.execute("INSERT INTO editions (campaign, edition_id, status, reason, created_at)"
                       " VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING", (campaign, edition_id, "skipped", reason, iso(now)))

    def edition_records(self, campaign: str | None = None) -> list[EditionRecord]:
        """Every edition record (without its rendering), or one campaign's, in edition order."""
        q = "SELECT campaign, edition_id, status, reason, content_hash, created_at FROM editions"
        args: tuple = ()
        if campaign:
            q += " WHERE campaign = ?"
            args = (campaign,)
        return [_edition(r) for r in self.conn.execute(q + " ORDER BY campaign, edition_id", args)]

    # -- dispatch runs and scheduler state ---------------------------------------------------------

    def start_run(self, edition_key: str, channel: str, now: datetime) -> int:
        """Record that a channel started sending an edition; returns the run's id for finish_run."""
        start = now.astimezone(timezone.utc)
        with self.transaction() as db:
            self._in_turn(db, f"runs:{edition_key}/{channel}")  # senders sharing the edition start at once
            last = db.execute("SELECT max(started_at) FROM runs WHERE edition_key=? AND channel=?",
                              (edition_key, channel)).fetchone()[0]
            if last and from_iso(last) >= start:  # a fixed --now: keep every run, in order
                start = from_iso(last) + timedelta(microseconds=1)
            return db.execute(f"INSERT INTO runs (edition_key, channel, started_at) VALUES (?,?,?) RETURNING {self._rowid}",
                              (edition_key, channel, start.isoformat(timespec="microseconds"))).fetchone()[0]

    def finish_run(self, run_id: int, now: datetime, seconds: float, outcome: str, summary: str = "") -> None:
        with self.transaction() as db:
            db.execute(f"UPDATE runs SET finished_at=?, seconds=?, outcome=?, summary=? WHERE {self._rowid}=?",
                       (iso(now), seconds, outcome, summary, run_id))

    def runs(self, edition_key: str | None = None, channel: str | None = None) -> list[Run]:
        """Dispatch runs, oldest first, optionally of one edition key and channel."""
        q, args = f"SELECT {self._rowid} AS id, * FROM runs WHERE 1=1", []
        if edition_key:
            q += " AND edition_key = ?"
            args.append(edition_key)
        if channel:
            q += " AND channel = ?"
            args.append(channel)
        return [_run(r) for r in self.conn.execute(q + f" ORDER BY started_at, {self._rowid}", args)]

    def last_runs(self, campaign: str) -> list[Run]:
        """The latest run of each channel of a campaign (any edition)."""
        return [_run(r) for r in self.conn.execute(
            f"SELECT {self._rowid} AS id, * FROM runs r WHERE edition_key LIKE ? ESCAPE '\\' AND started_at ="
            " (SELECT max(started_at) FROM runs WHERE channel = r.channel AND edition_key LIKE ? ESCAPE '\\')"
            " ORDER BY channel", (_like_prefix(campaign), _like_prefix(campaign)))]

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
            db.executemany("INSERT INTO suppression (email, reason, detail, created_at) VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
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
                   categories=tuple(json.loads(r["categories"])), thumbnail=r["thumbnail"])


def _feed_state(r: sqlite3.Row) -> FeedState:
    return FeedState(r["source"], r["etag"], r["last_modified"], from_iso(r["last_fetch"]) if r["last_fetch"] else None,
                     r["last_result"], bool(r["ok"]))


def _edition(r: sqlite3.Row) -> EditionRecord:
    return EditionRecord(r["campaign"], r["edition_id"], r["status"], r["reason"], r["content_hash"],
                         from_iso(r["created_at"]), r["rendered"] if "rendered" in r.keys() else None)


def _run(r: sqlite3.Row) -> Run:
    return Run(r["id"], r["edition_key"], r["channel"], from_iso(r["started_at"]),
               from_iso(r["finished_at"]) if r["finished_at"] else None, r["seconds"], r["outcome"], r["summary"])
