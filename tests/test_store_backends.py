"""The backend seam (publisher/store/backend.py): the same SQL text, with SQLite's placeholders, runs on
SQLite and on a real PostgreSQL server (started by the tests), and rows read the same on both."""

from __future__ import annotations

import sqlite3

import pytest

from publisher.store.backend import PgConnection, is_postgres_url, to_format


def _connect(target: str):
    if is_postgres_url(target):
        return PgConnection(target)
    conn = sqlite3.connect(target, isolation_level=None)
    conn.row_factory = sqlite3.Row
    return conn


@pytest.fixture
def conn(store_target):
    c = _connect(store_target)
    c.execute("CREATE TABLE t (k TEXT NOT NULL, n INTEGER NOT NULL DEFAULT 0, note TEXT, PRIMARY KEY (k))")
    yield c
    c.close()


def test_placeholders_become_psycopg_style_outside_quotes_only():
    assert to_format("SELECT ? , '?', \"a?\" WHERE x LIKE 'a%' AND y = ?", (1, 2)) == (
        "SELECT %s , '?', \"a?\" WHERE x LIKE 'a%%' AND y = %s", [1, 2])
    # a numbered placeholder repeats its value where the text uses it twice
    assert to_format("WHERE a = ?1 AND b = ?2 AND c > ?1", ("x", "y")) == ("WHERE a = %s AND b = %s AND c > %s", ["x", "y", "x"])
    assert to_format("SELECT 'it''s ?' || ?", ("z",)) == ("SELECT 'it''s ?' || %s", ["z"])


def test_rows_read_by_name_position_and_keys(conn):
    conn.execute("INSERT INTO t (k, n, note) VALUES (?, ?, ?)", ("a", 5, "50% done"))
    row = conn.execute("SELECT k, n, note FROM t WHERE k = ?1 OR note = ?1", ("a",)).fetchone()
    assert (row["k"], row["n"], row[2]) == ("a", 5, "50% done")
    assert list(row.keys()) == ["k", "n", "note"]
    assert conn.execute("SELECT k FROM t WHERE k = ?", ("nobody",)).fetchone() is None
    assert [r[0] for r in conn.execute("SELECT k FROM t")] == ["a"]


def test_the_store_transactions_commit_and_roll_back_alike(conn):
    assert not conn.in_transaction
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO t (k) VALUES (?)", ("kept",))
    assert conn.in_transaction
    conn.execute("COMMIT")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO t (k) VALUES (?)", ("dropped",))
    conn.execute("ROLLBACK")
    assert not conn.in_transaction
    assert [r["k"] for r in conn.execute("SELECT k FROM t ORDER BY k")] == ["kept"]


def test_portable_upsert_returning_and_update_from_values(conn):
    """The constructs both databases share, which the store's SQL moves to: ON CONFLICT DO NOTHING (not
    INSERT OR IGNORE), RETURNING, UPDATE ... FROM (VALUES ...) with its columns column1, column2..."""
    ins = "INSERT INTO t (k, n) VALUES (?, ?) ON CONFLICT DO NOTHING"
    assert conn.executemany(ins, [("a", 1), ("b", 2)]).rowcount == 2
    assert conn.executemany(ins, [("a", 9), ("c", 3)]).rowcount == 1  # only the new row counts
    rows = conn.execute("UPDATE t SET n = n + 10 WHERE k IN (SELECT k FROM t WHERE k > ? ORDER BY k LIMIT ?)"
                        " RETURNING k, n", ("a", 5)).fetchall()
    assert sorted((r[0], r[1]) for r in rows) == [("b", 12), ("c", 13)]
    cur = conn.execute("UPDATE t SET note = v.column2 FROM (VALUES (?, ?), (?, ?)) AS v WHERE k = v.column1",
                       ("a", "first", "c", "third"))
    assert cur.rowcount == 2
    assert [(r["k"], r["n"], r["note"]) for r in conn.execute("SELECT * FROM t ORDER BY k")] == [
        ("a", 1, "first"), ("b", 12, None), ("c", 13, "third")]
