"""What SQLite plans to do for the queries a piece of code really runs: captured with a trace callback on
the store's connection, then asked with EXPLAIN QUERY PLAN on the same file."""

from __future__ import annotations

import re
import sqlite3
from contextlib import contextmanager
from typing import Iterator

# A plan step that reads a bounded part of deliveries: a SEARCH with a constraint on an index or the
# primary key. "SCAN deliveries" reads every row; "SEARCH ... USING INDEX x" without a constraint walks
# the whole index, which is the same cost.
_BOUNDED = re.compile(r"^SEARCH deliveries USING (?:COVERING INDEX \w+|INDEX \w+|PRIMARY KEY) \(.+\)$")


@contextmanager
def captured(conn: sqlite3.Connection) -> Iterator[list[str]]:
    """The SELECT statements (with their values expanded) run on `conn` inside the block."""
    seen: list[str] = []
    conn.set_trace_callback(lambda sql: seen.append(sql) if sql.lstrip().upper().startswith(("SELECT", "WITH")) else None)
    try:
        yield seen
    finally:
        conn.set_trace_callback(None)


def plan(conn: sqlite3.Connection, sql: str) -> list[str]:
    """The EXPLAIN QUERY PLAN steps of one statement."""
    return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]


def deliveries_steps(conn: sqlite3.Connection, statements: list[str]) -> dict[str, list[str]]:
    """For each statement that reads the deliveries table, its plan steps on that table."""
    out = {}
    for sql in statements:
        if re.search(r"\bdeliveries\b", sql):
            out[sql] = [step for step in plan(conn, sql) if re.search(r"\bdeliveries\b", step)]
    return out


def unbounded(steps: dict[str, list[str]]) -> list[tuple[str, str]]:
    """(statement, step) for every step that reads all of deliveries or all of one of its indexes."""
    return [(sql, step) for sql, found in steps.items() for step in found if not _BOUNDED.match(step)]
