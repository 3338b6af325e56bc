"""The backend seam (publisher/store/backend.py): the same SQL text, with SQLite's placeholders, runs on
SQLite and on a real PostgreSQL server (started by the tests), rows read the same on both, and the ledger
keeps its promises on both (one row claimed by one sender only)."""

from __future__ import annotations

import os
import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from publisher.errors import LockedError
from publisher.models import State
from publisher.store.backend import PgConnection, is_postgres_url, to_format
from publisher.store.db import Store
from publisher.store.ledger import Ledger
from support.email_project import ENV, prepared, send_args
from support.postgres import SENDER, SENDER_PASSWORD
from support.smtp_servers import SmtpServer
from support.user_errors import edit, error_line


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


NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
KEY = "endurance/2026-W48"


def test_the_ledger_plans_claims_finishes_and_counts_alike(store_target):
    store = Store(store_target)
    ledger = Ledger(store, clock=lambda: NOW)
    targets = [f"r{i:03}@example.org" for i in range(10)]
    assert ledger.plan(KEY, "email", targets) == 10
    assert ledger.plan(KEY, "email", targets[:3] + ["new@example.org"]) == 1  # planned rows keep their state
    claimed = ledger.claim_range(KEY, "email", 4, "", NOW)
    assert [t for t, _ in claimed] == ["new@example.org", *targets[:3]]
    ledger.finish(KEY, "email", [(t, State.SENT, f"<{t}>", "250 ok") for t, _ in claimed[:3]], count_attempt=True)
    ledger.retry_later(KEY, "email", [(claimed[3][0], NOW + timedelta(minutes=5), "451 later")], count_attempt=True)
    assert ledger.claim_range(KEY, "email", 2, "", NOW)[0][0] == targets[3]  # the one held back is not due
    assert ledger.recover(KEY, "email") == targets[3:5]  # claimed, never finished: outcome unknown
    assert ledger.counts(KEY, "email") == {"planned": 6, "sending": 0, "sent": 3, "failed": 0, "unknown": 2}
    assert ledger.get(KEY, "email", "new@example.org").remote_id == "<new@example.org>"
    assert ledger.get(KEY, "email", targets[2]).attempts == 1
    assert ledger.first_targets(KEY, ["email"], State.UNKNOWN, 5) == targets[3:5]
    run = store.start_run(KEY, "email", NOW)
    store.finish_run(run, NOW, 1.5, "ok", "3 sent")
    assert [(r.id, r.outcome, r.seconds) for r in store.runs(KEY)] == [(run, "ok", 1.5)]
    store.close()


def test_two_senders_claiming_one_edition_never_take_the_same_row(store_target):
    """Each sender has its own connection and walks the edition in batches, a 4xx putting some rows back for a
    later pass; together they send every row once, and their writes to the same counts never deadlock."""
    setup = Store(store_target)
    Ledger(setup, clock=lambda: NOW).plan(KEY, "email", [f"r{i:04}@example.org" for i in range(600)])
    sent: list[list[str]] = [[], []]
    errors: list[BaseException] = []

    def sender(n: int) -> None:
        try:
            store = Store(store_target)
            ledger = Ledger(store, clock=lambda: NOW).hold(f"sender-{n}")
            while True:  # passes over the edition until a pass finds nothing due
                after, claimed = "", 0
                while batch := ledger.claim_range(KEY, "email", 7, after, NOW):
                    after, claimed = batch[-1][0], claimed + len(batch)
                    later = [t for t, attempts in batch[:2] if attempts == 0]  # a first try of these gets a 4xx
                    ledger.retry_later(KEY, "email", [(t, NOW, "451 later") for t in later], count_attempt=True)
                    done = [t for t, _ in batch if t not in later]
                    ledger.finish(KEY, "email", [(t, State.SENT, None, "250") for t in done], count_attempt=True)
                    sent[n] += done
                if not claimed:
                    break
            ledger.let_go()
            store.close()
        except BaseException as exc:  # the test fails below with it
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(n,)) for n in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == []
    assert not set(sent[0]) & set(sent[1])
    assert sorted(sent[0] + sent[1]) == [f"r{i:04}@example.org" for i in range(600)]
    assert Ledger(setup).counts(KEY, "email") == {"planned": 0, "sending": 0, "sent": 600, "failed": 0, "unknown": 0}
    setup.close()


def test_recovery_settles_only_the_rows_of_senders_that_are_gone(store_target):
    """Two senders on one edition, each with its own connection: one starting never touches the other's rows."""
    a_store, b_store = Store(store_target), Store(store_target)
    Ledger(a_store, clock=lambda: NOW).plan(KEY, "email", [f"r{i:02}@example.org" for i in range(20)])
    a = Ledger(a_store, clock=lambda: NOW).hold("sender-a")
    b = Ledger(b_store, clock=lambda: NOW).hold("sender-b")
    mine = [t for t, _ in a.claim_range(KEY, "email", 5, "", NOW)]
    theirs = [t for t, _ in b.claim_range(KEY, "email", 5, "", NOW)]
    assert not set(mine) & set(theirs)
    assert b.recover(KEY, "email") == [] and b.recover_channel("email") == 0  # a lives: its rows stay `sending`
    assert b.orphans(KEY, "email") == {} and b.held_elsewhere(KEY, "email") == 5
    assert a.sending(KEY, "email", "sender-a") == mine
    a_store.close()  # a is gone (a kill does the same: its lease goes with its process or session)
    assert b.orphans(KEY, "email") == {"sender-a": mine} and b.held_elsewhere(KEY, "email") == 0
    # settling is conditional: a row another recoverer already moved is left as it is
    b.settle(KEY, "email", "sender-a", [(mine[0], State.SENT, "<id>", "250 ok")], replan=[mine[1]])
    b.settle(KEY, "email", "sender-a", [(mine[0], State.UNKNOWN, None, "late")], replan=[])
    assert b.get(KEY, "email", mine[0]).state is State.SENT and b.get(KEY, "email", mine[1]).state is State.PLANNED
    assert b.recover(KEY, "email") == mine[2:]  # the rest of a's: unknown; b's own claims untouched
    assert b.sending(KEY, "email") == theirs
    assert b.counts(KEY, "email") == {"planned": 11, "sending": 5, "sent": 1, "failed": 0, "unknown": 3}
    b.let_go()
    b_store.close()


def test_a_shared_lease_admits_every_shared_holder_and_no_one_alone(store_target):
    stores = [Store(store_target) for _ in range(3)]
    one, two, alone = stores
    one.acquire_lease("send:e", NOW, shared=True)
    two.acquire_lease("send:e", NOW, shared=True)
    with pytest.raises(LockedError, match=f"send:e is held by pid {os.getpid()}"):
        alone.acquire_lease("send:e", NOW)
    assert alone.lease("send:e") is not None
    one.release_lease("send:e")
    with pytest.raises(LockedError):
        alone.acquire_lease("send:e", NOW)  # two still holds it
    two.release_lease("send:e")
    assert alone.lease("send:e") is None
    if not is_postgres_url(store_target):  # the last holder removed the lock file: no leftovers per edition
        assert list(Path(store_target + ".locks").glob("*")) == []
    alone.acquire_lease("send:e", NOW)  # now alone
    with pytest.raises(LockedError):
        one.acquire_lease("send:e", NOW, shared=True)
    alone.release_lease("send:e")
    one.acquire_lease("send:e", NOW, shared=True)
    for s in stores:
        s.close()


# -- [publisher].store as a user writes it -------------------------------------------------------


def test_a_password_written_in_the_store_url_is_refused_and_never_repeated(project):
    edit(project.settings, r'^store = .*$', 'store = "postgresql://sender:hunter2-secret@127.0.0.1:5432/publisher"')
    proc = project.cli("status")
    assert proc.returncode == 2
    line = error_line(proc)
    assert "[publisher].store: the URL holds a password" in line and "PUBLISHER_STORE_PASSWORD" in proc.stderr
    assert "hunter2" not in proc.stdout + proc.stderr


def test_a_store_url_without_a_database_name_says_how_to_write_it(project):
    edit(project.settings, r'^store = .*$', 'store = "postgresql://sender@127.0.0.1:5432"')
    proc = project.cli("status")
    assert proc.returncode == 2
    assert "needs a host and a database name" in error_line(proc)
    assert "postgresql://user@host:5432/dbname" in proc.stderr


def test_a_wrong_store_password_is_one_line_without_the_password(postgres_server, project):
    project.use_store(postgres_server.create_database("w_" + os.urandom(4).hex(), owner=SENDER), "not-the-password-42")
    proc = project.cli("fetch")
    assert proc.returncode == 2
    line = error_line(proc)
    assert f"store {project.store_url}: cannot use it" in line and "password authentication failed" in line
    assert "not-the-password-42" not in proc.stdout + proc.stderr
    assert "PUBLISHER_STORE_PASSWORD" in proc.stderr  # where the password goes


def test_a_postgresql_store_keeps_the_wire_journal_in_the_state_folder(postgres_server, project, monkeypatch):
    """Each machine keeps its own files: with a PostgreSQL store they go to [publisher].state_dir."""
    with SmtpServer() as srv:
        project.use_store(postgres_server.create_database("j_" + os.urandom(4).hex(), owner=SENDER), SENDER_PASSWORD)
        monkeypatch.setenv("PUBLISHER_STORE_PASSWORD", SENDER_PASSWORD)  # prepared() opens the store here
        prepared(project, srv.port, 5)
        edit(project.settings, r'^store = (.*)$', r'store = \1\nstate_dir = "machine-a"')
        proc = project.cli(*send_args(), env=ENV)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert len(srv.received) == 5
    assert (project.root / "machine-a" / "journal").is_dir()
    assert not (project.root / "var" / "publisher.sqlite3").exists()
