"""`publisher db copy`: every row of an SQLite store into an empty PostgreSQL store, in one transaction.

Tables go in an order where a referenced table comes before the tables that reference it (PostgreSQL
checks each REFERENCES as rows arrive), each read in primary-key order and written in batches, so a
million-row ledger never sits in memory. Times are ISO text on both backends: values copy unchanged.
Identity keys (subscribers, origins, consents, ...) keep their numbers and their sequences then start
after the highest, so the next sign-up gets a fresh id. delivery_counts is not copied: the target's
triggers count the ledger rows as they arrive, and the copy ends by checking those counts against a full
count. Any failure rolls the whole transaction back: the target is left empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from publisher.errors import ConfigError, LockedError
from publisher.store.backend import BackendError
from publisher.store.db import Store
from publisher.store.isotime import iso

BATCH = 2000
# kept by each store itself: its own schema_version rows; the counts rebuilt by the target's triggers
NOT_COPIED = ("schema_version", "delivery_counts")


@dataclass(frozen=True)
class Copied:
    table: str
    rows: int


def tables_in_order(source: Store) -> list[str]:
    """The source's tables, each after the tables it references (else in the order they were created)."""
    names = [r[0] for r in source.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"
                                               " AND name NOT LIKE 'sqlite_%' ORDER BY rowid")
             if r[0] not in NOT_COPIED]
    needs = {n: {r["table"] for r in source.conn.execute(f"PRAGMA foreign_key_list({n})")} - {n} for n in names}
    ordered: list[str] = []
    while len(ordered) < len(names):
        before = len(ordered)
        for n in names:
            if n not in ordered and needs[n] <= set(ordered):
                ordered.append(n)
        if len(ordered) == before:  # a cycle: copy the rest as they come, PostgreSQL will name the row it refuses
            ordered += [n for n in names if n not in ordered]
    return ordered


def check_no_lease_held(source: Store) -> None:
    """A send or the scheduler still running on the source would write rows the copy does not see."""
    for (name,) in source.conn.execute("SELECT name FROM leases ORDER BY name").fetchall():
        held = source.lease(name)
        if held:
            raise LockedError(f"db copy: {name} is held by {held.holder} since {iso(held.acquired_at)} on {source.where}",
                              hint="stop it first (the scheduler, or that send), then rerun the same command")


def check_empty(target: Store, tables: list[str]) -> None:
    for table in (*tables, "delivery_counts"):
        exists = target.conn.execute("SELECT to_regclass(?) IS NOT NULL", (table,)).fetchone()[0]
        if exists and target.conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone():
            raise ConfigError(f"db copy: {target.where} already has rows in {table}; nothing was copied",
                              hint="copy into a new empty database (nothing is ever overwritten)")


def _columns(target: Store, table: str) -> tuple[list[str], bool]:
    """The target table's columns, and whether it has an identity column (its numbers are copied too)."""
    rows = target.conn.execute("SELECT column_name, is_identity FROM information_schema.columns"
                               " WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
                               (table,)).fetchall()
    return [r[0] for r in rows], any(r[1] == "YES" for r in rows)


def _copy_table(source: Store, target: Store, db: Any, table: str, progress) -> int:
    info = source.conn.execute(f"PRAGMA table_info({table})").fetchall()
    have = [r["name"] for r in info]
    columns, identity = _columns(target, table)
    # `runs` has an id on PostgreSQL where SQLite numbers it by rowid
    select = [c if c in have else "rowid" if c == "id" else None for c in columns]
    if not columns or None in select or set(have) - set(columns):
        raise ConfigError(f"db copy: table {table} differs between {source.where} and {target.where}",
                          hint="open both with this publisher version first ('publisher db upgrade'), then rerun")
    key = [r["name"] for r in sorted(info, key=lambda r: r["pk"]) if r["pk"]] or ["rowid"]
    total = source.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    insert = (f"INSERT INTO {table} ({', '.join(columns)}){' OVERRIDING SYSTEM VALUE' if identity else ''}"
              f" VALUES ({', '.join('?' * len(columns))})")
    rows = source.conn.cursor()
    rows.row_factory = None  # plain tuples: what the driver takes as parameters
    rows.execute(f"SELECT {', '.join(select)} FROM {table} ORDER BY {', '.join(key)}")
    with progress.task(f"db copy {table}", total=total) as task:
        while batch := rows.fetchmany(BATCH):
            db.executemany(insert, batch)
            task.advance(len(batch))
    return total


def copy_store(source: Store, target: Store, progress) -> list[Copied]:
    """Copy every table of `source` (SQLite, opened at this version) into `target` (an empty PostgreSQL store,
    opened with check_schema=False: created or brought to the latest version here, once it is known empty)."""
    check_no_lease_held(source)
    tables = tables_in_order(source)
    with target.conn.translated():
        check_empty(target, tables)
    target.upgrade()
    done: list[Copied] = []
    source.conn.execute("BEGIN")  # one snapshot of the source for the whole copy
    try:
        with target.conn.translated(), target.transaction() as db:
            for table in tables:
                done.append(Copied(table, _copy_table(source, target, db, table, progress)))
            for table, column in db.execute("SELECT table_name, column_name FROM information_schema.columns"
                                            " WHERE table_schema = current_schema() AND is_identity = 'YES'").fetchall():
                # the next id after the highest copied (1 for an empty table)
                db.execute(f"SELECT setval(pg_get_serial_sequence(?, ?), coalesce((SELECT max({column}) FROM {table}), 0) + 1,"
                           " false)", (table, column))
            counts = _check_counts(db, target)
    except BackendError as exc:
        raise ConfigError(f"db copy: {target.where} refused the copy ({exc}); the target was left empty",
                          hint="fix what it names, then rerun the same command") from None
    finally:
        source.conn.execute("ROLLBACK")
    return [*done, Copied("delivery_counts", counts)]


def _check_counts(db: Any, target: Store) -> int:
    """The counts the triggers kept while the ledger arrived must be a full count of it."""
    full = {tuple(r[:3]): r[3] for r in db.execute("SELECT edition_key, channel, state, count(*) FROM deliveries"
                                                    " GROUP BY edition_key, channel, state")}
    kept = {tuple(r[:3]): r[3] for r in db.execute("SELECT edition_key, channel, state, n FROM delivery_counts WHERE n <> 0")}
    if kept != full:
        wrong = sorted(set(kept.items()) ^ set(full.items()))[0]
        raise ConfigError(f"db copy: the delivery counts of {target.where} do not match its ledger ({wrong});"
                          " nothing was copied", hint="rerun the same command; if it fails again, report it")
    return len(kept)
