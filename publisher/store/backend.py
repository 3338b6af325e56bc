"""The seam between the store's SQL and the database that runs it: SQLite (embedded) or PostgreSQL (shared).

The store's modules write one SQL text with SQLite's placeholders (`?`, and `?1`, `?2` for a value used
twice) and read rows by name or by position. On SQLite they go to sqlite3 unchanged. On PostgreSQL a
`PgConnection` gives psycopg 3 the same text with the placeholders rewritten (`%s`, literal `%` doubled),
runs it in autocommit mode so the store's own BEGIN/COMMIT delimit transactions exactly as on SQLite,
and returns rows that answer `row["name"]`, `row[0]` and `row.keys()` like sqlite3.Row.

What this layer does NOT translate, so the store's SQL is written portably or per `Store.dialect`:
INSERT OR IGNORE / OR REPLACE (written ON CONFLICT), `WITHOUT ROWID`, `rowid` and `lastrowid` (written
RETURNING), PRAGMA, executescript, triggers (plpgsql on PostgreSQL, see tables.py), json_each,
group_concat, `IS ?` with a bound value (written IS NOT DISTINCT FROM), and a unary `+` on text.
The server's own troubles become the user's errors: its disk full DiskFullError, a lost connection
StoreError (one line each); a mistake in the SQL stays the driver's exception.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Sequence

from publisher.errors import DiskFullError, StoreError

SQLITE, POSTGRESQL = "sqlite", "postgresql"

# A quoted string or identifier (copied as is), a numbered or plain placeholder, or a literal percent sign.
_TOKEN = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|\?(\d*)|%""")
_NUMBERED = re.compile(r"\?\d")


def is_postgres_url(target: str) -> bool:
    """True for a `postgresql://` (or `postgres://`) store; anything else is an SQLite file path."""
    return str(target).startswith(("postgresql://", "postgres://"))


def _first_line(exc: Exception) -> str:
    text = redact(str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class BackendError(Exception):
    """The database could not be reached or refused the work (the driver's message, without the password)."""


def redact(url: str) -> str:
    """The URL without a password, for messages (PUBLISHER_STORE_PASSWORD is where the password belongs)."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def to_format(sql: str, params: Sequence[Any] | None) -> tuple[str, list[Any]]:
    """SQLite-style SQL and parameters -> psycopg's `%s` style, values repeated where `?N` repeats one."""
    given = list(params or ())
    out: list[Any] = []
    plain = 0

    def swap(m: re.Match) -> str:
        nonlocal plain
        text = m.group(0)
        if text == "%":
            return "%%"
        if not text.startswith("?"):
            return text.replace("%", "%%")  # quoted: no placeholder, but psycopg reads every % sign
        if m.group(1):
            out.append(given[int(m.group(1)) - 1])
        else:
            out.append(given[plain])
            plain += 1
        return "%s"

    return _TOKEN.sub(swap, sql), out


def _first_line(exc: Exception) -> str:
    return redact(str(exc)).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


class Row(tuple):
    """A result row by position or by column name, like sqlite3.Row."""

    _names: dict[str, int]

    def __new__(cls, names: dict[str, int], values: Iterable[Any]) -> "Row":
        row = super().__new__(cls, values)
        row._names = names
        return row

    def __getitem__(self, key):  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


def _row_factory(cursor):
    names = {c.name: i for i, c in enumerate(cursor.description or ())}
    return lambda values: Row(names, values)


class PgCursor:
    """The part of sqlite3.Cursor the store uses: fetchone, fetchall, iteration, rowcount."""

    def __init__(self, cursor) -> None:
        self._cursor = cursor

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int:
        raise NotImplementedError("PostgreSQL has no lastrowid: use INSERT ... RETURNING id")

    def fetchone(self) -> Row | None:
        return self._cursor.fetchone() if self._cursor.description else None

    def fetchall(self) -> list[Row]:
        return self._cursor.fetchall() if self._cursor.description else []

    def __iter__(self) -> Iterator[Row]:
        return iter(self.fetchall())


class PgConnection:
    """A psycopg 3 connection that runs the store's SQLite-style SQL (see the module docstring)."""

    dialect = POSTGRESQL

    def __init__(self, url: str, *, password: str | None = None, connect_timeout: int = 30) -> None:
        try:
            import psycopg  # only a PostgreSQL store loads the driver (the `postgres` extra)
        except ImportError:
            raise BackendError("the PostgreSQL driver is not installed: pip install 'publisher[postgres]'") from None
        self._psycopg = psycopg
        self.where = redact(url)
        extra = {"password": password} if password else {}
        try:
            # the application name lets an administrator tell our sessions apart (pg_stat_activity)
            self._conn = psycopg.connect(url, autocommit=True, connect_timeout=connect_timeout,
                                         row_factory=_row_factory, application_name=f"publisher pid {os.getpid()}",
                                         **extra)
        except psycopg.Error as exc:
            raise BackendError(_first_line(exc)) from None

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """What the server says about itself (its disk, the connection) as the user's errors; SQL mistakes stay."""
        try:
            yield
        except self._psycopg.Error as exc:
            state = getattr(exc, "sqlstate", None) or ""
            if state == "53100":
                raise DiskFullError(f"disk full: the PostgreSQL server of store {self.where} cannot write ({_first_line(exc)})",
                                    hint="free space on the database server's disk, then rerun the same command") from None
            if (self._conn.closed or state.startswith("08") or state in ("57P01", "57P02", "57P03")
                    or isinstance(exc, self._psycopg.OperationalError) and not state):
                raise StoreError(f"store {self.where}: the connection to PostgreSQL was lost ({_first_line(exc)})",
                                 hint="check that the server is up and reachable, then rerun the same command"
                                      " (what was sent is skipped; what was on the wire is settled)") from None
            raise

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> PgCursor:
        with self._translated():
            cur = self._conn.cursor()
            if not params:  # sent as is: psycopg reads no placeholders then, and several statements may go at once
                if sql.strip().upper() == "BEGIN IMMEDIATE":  # SQLite's write lock up front; PostgreSQL locks rows
                    sql = "BEGIN"
                cur.execute(sql)
            else:
                cur.execute(*to_format(sql, params))
        return PgCursor(cur)

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> PgCursor:
        rows = list(seq)
        with self._translated():
            cur = self._conn.cursor()
            if rows:
                text, _ = to_format(sql, rows[0])
                cur.executemany(text, [to_format(sql, r)[1] for r in rows])
        return PgCursor(cur)

    @contextmanager
    def translated(self) -> Iterator[None]:
        """Opening and upgrading a store: the driver's errors as BackendError (its first line, without a
        password) for a one-line message. (Runtime statements go through _translated.)"""
        try:
            yield
        except self._psycopg.Error as exc:
            raise BackendError(_first_line(exc)) from None

    @property
    def in_transaction(self) -> bool:
        status = self._psycopg.pq.TransactionStatus
        return not self._conn.closed and self._conn.info.transaction_status in (status.INTRANS, status.INERROR, status.ACTIVE)

    def close(self) -> None:
        self._conn.close()
