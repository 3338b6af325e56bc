"""The versioned schema: numbered migrations, the same numbers on SQLite and PostgreSQL, and what opening does.

A store records each migration applied in `schema_version` (version, applied_at, description). Version 1
is the whole schema as it was when versioning began (tables.py). A later change to the tables is a new
migration at the end of MIGRATIONS, with its SQLite and its PostgreSQL text (one text when it is portable),
never an edit of an earlier one: stores already past it would not see the edit.

Opening a store (`open_schema`, from Store.__init__):
- a new, empty store (either backend) is created at the latest version, all in one transaction;
- an SQLite store behind the code upgrades itself, as it always did (one machine); one made before
  versioning (tables, no schema_version) is brought up by tables.migrate and stamped 1;
- a PostgreSQL store behind the code is refused: several machines may share it, so an upgrade is a
  deliberate step (`publisher db upgrade`), taken when every machine runs the new version;
- a store ahead of the code (a newer publisher upgraded it) is refused on both, and left as it is.
Migrations run under a lock (BEGIN IMMEDIATE on SQLite, an advisory transaction lock on PostgreSQL), each
in its own transaction with its version row, and the version is read again under the lock: two processes
never apply one twice, and a failed migration leaves the store at the version before it.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence, Union

from publisher.errors import ConfigError
from publisher.store.backend import SQLITE
from publisher.store.tables import create_postgres, migrate, statements

Step = Union[str, Callable[[Any], None]]  # SQL text, or a function of the connection (in the migration's transaction)


@dataclass(frozen=True)
class Migration:
    """One numbered step of the schema: what it does, and how on each backend."""

    version: int
    description: str
    sqlite: Step
    postgresql: Step | None = None  # None: the SQLite text is portable

    def apply(self, conn, dialect: str) -> None:
        step = self.sqlite if dialect == SQLITE or self.postgresql is None else self.postgresql
        if callable(step):
            step(conn)
        elif dialect == SQLITE:
            for statement in statements(step):
                conn.execute(statement)
        else:
            conn.execute(step)  # without parameters psycopg sends the whole text at once (plpgsql bodies included)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "the tables of publisher 1 (articles, editions, subscribers, ledger, feedback, newsroom)",
              migrate, create_postgres),
)

VERSIONS = """CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    applied_at TEXT NOT NULL,
    description TEXT NOT NULL
)"""
# applied_at on the database's own clock: an upgrade is recorded when it happened, whatever --now says
_CLOCK = {SQLITE: "strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')",
          "postgresql": "to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"+00:00\"')"}
# Any fixed number: the advisory lock under which PostgreSQL migrations run, one process at a time
_LOCK = 0x7075626C  # "publ"


def latest(migrations: Sequence[Migration] = MIGRATIONS) -> int:
    return migrations[-1].version


def _exists(conn, dialect: str, table: str) -> bool:
    if dialect == SQLITE:
        return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone() is not None
    return bool(conn.execute("SELECT to_regclass(?) IS NOT NULL", (table,)).fetchone()[0])


def version(conn, dialect: str) -> int | None:
    """The store's schema version: None for an empty (new) store, 0 for one made before versioning."""
    if _exists(conn, dialect, "schema_version"):
        have = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0]
        if have is not None:
            return have
    return 0 if _exists(conn, dialect, "deliveries") else None


def behind(where: str, have: int, need: int) -> ConfigError:
    return ConfigError(f"store {where}: schema version {have}, this publisher needs {need}", hint="run 'publisher db upgrade'")


def _check_not_ahead(where: str, have: int | None, migrations: Sequence[Migration]) -> None:
    if have is not None and have > latest(migrations):
        raise ConfigError(f"store {where}: schema version {have}, newer than this publisher knows ({latest(migrations)});"
                          " nothing was changed", hint="upgrade publisher on this machine")


@contextmanager
def _locked(conn, dialect: str) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")  # SQLite: the write lock now; PostgreSQL: BEGIN, then the advisory lock
    try:
        if dialect != SQLITE:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (_LOCK,))
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _apply(conn, dialect: str, m: Migration) -> None:
    m.apply(conn, dialect)
    conn.execute(VERSIONS)
    conn.execute(f"INSERT INTO schema_version (version, applied_at, description) VALUES (?, {_CLOCK[dialect]}, ?)",
                 (m.version, m.description))


def upgrade(conn, dialect: str, where: str, migrations: Sequence[Migration] = MIGRATIONS,
            applied: Callable[[Migration], None] | None = None) -> list[Migration]:
    """Apply the pending migrations (a new store: all of them in one transaction); returns those this call applied."""
    _check_not_ahead(where, version(conn, dialect), migrations)
    done: list[Migration] = []
    if version(conn, dialect) is None:
        with _locked(conn, dialect):
            if version(conn, dialect) is None:  # not made by another process while we waited for the lock
                for m in migrations:
                    _apply(conn, dialect, m)
                done = list(migrations)
        for m in done:
            if applied:
                applied(m)
    for m in migrations[len(done):]:
        with _locked(conn, dialect):
            have = version(conn, dialect) or 0
            _check_not_ahead(where, have, migrations)
            if have >= m.version:
                continue  # applied by another process meanwhile
            _apply(conn, dialect, m)
        done.append(m)
        if applied:
            applied(m)
    return done


def open_schema(conn, dialect: str, where: str, migrations: Sequence[Migration] = MIGRATIONS) -> None:
    """What opening a store does to its schema (see the module docstring): create, upgrade, or refuse."""
    have = version(conn, dialect)
    _check_not_ahead(where, have, migrations)
    if have == latest(migrations):
        return
    if have is not None and dialect != SQLITE:
        raise behind(where, have, latest(migrations))
    upgrade(conn, dialect, where, migrations)
