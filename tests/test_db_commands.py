"""The versioned schema and `publisher db version|upgrade|copy`, on real SQLite files and a real PostgreSQL server.

The commands run as a user runs them (`project.cli`, a subprocess); the stores are read straight from
their database to check what the commands said.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import datetime, timezone
from urllib.parse import urlencode

import pytest

from publisher.store.backend import PgConnection
from publisher.store.db import Store
from publisher.errors import ConfigError
from publisher.store.migrations import MIGRATIONS, Migration, open_schema
from publisher.store.tables import create_postgres
from support.email_project import ENV, NOW, send_args, store_path
from support.postgres import SENDER, SENDER_PASSWORD
from support.web import csrf, request, serving

LATEST = MIGRATIONS[-1].version
V2 = Migration(2, "an index of articles by source", "CREATE INDEX articles_source ON articles(source)")
# What publisher wrote before the versioned schema (and before deliveries.holder, the counts, feedback and
# newsroom tables): a store of that age must come up with its rows.
OLD_SCHEMA = """
CREATE TABLE articles (id TEXT PRIMARY KEY, link TEXT NOT NULL, title TEXT NOT NULL, summary TEXT NOT NULL,
    summary_html TEXT NOT NULL DEFAULT '', published TEXT NOT NULL, source TEXT NOT NULL DEFAULT '', image TEXT,
    author TEXT, categories TEXT NOT NULL DEFAULT '[]', content_hash TEXT NOT NULL, first_seen TEXT NOT NULL,
    updated_at TEXT NOT NULL);
CREATE TABLE subscribers (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL DEFAULT '',
    locale TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE subscriptions (subscriber_id INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
    list TEXT NOT NULL, PRIMARY KEY (subscriber_id, list));
CREATE TABLE deliveries (edition_key TEXT NOT NULL, channel TEXT NOT NULL, target TEXT NOT NULL, state TEXT NOT NULL,
    remote_id TEXT, reply TEXT, attempts INTEGER NOT NULL DEFAULT 0, not_before TEXT, updated_at TEXT NOT NULL,
    PRIMARY KEY (edition_key, channel, target)) WITHOUT ROWID;
CREATE INDEX deliveries_state ON deliveries(edition_key, channel, state);
CREATE TABLE runs (edition_key TEXT NOT NULL, channel TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT,
    PRIMARY KEY (edition_key, channel, started_at));
INSERT INTO subscribers VALUES (7, 'claire@example.org', 'Claire', 'fr_FR', '2025-01-01T00:00:00+00:00', '2025-01-01T00:00:00+00:00');
INSERT INTO subscriptions VALUES (7, 'endurance');
INSERT INTO deliveries (edition_key, channel, target, state, attempts, updated_at) VALUES
    ('endurance/2025-W02', 'email', 'claire@example.org', 'sent', 1, '2025-01-06T08:00:00+00:00'),
    ('endurance/2025-W02', 'x', 'post:0', 'failed', 1, '2025-01-06T08:00:00+00:00');
INSERT INTO runs VALUES ('endurance/2025-W02', 'email', '2025-01-06T08:00:00+00:00', '2025-01-06T08:01:00+00:00');
"""


def versions(conn) -> list[int]:
    return [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")]


def full_count(conn) -> dict:
    return {tuple(r[:3]): r[3] for r in conn.execute(
        "SELECT edition_key, channel, state, count(*) FROM deliveries GROUP BY edition_key, channel, state")}


def kept_counts(conn) -> dict:
    return {tuple(r[:3]): r[3] for r in conn.execute("SELECT edition_key, channel, state, n FROM delivery_counts WHERE n <> 0")}


def one_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith("publisher: error:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def pg_project(project, postgres_server, name: str | None = None) -> str:
    """Point the project at a fresh PostgreSQL database owned by the sender role; returns its URL."""
    url = postgres_server.create_database(name or "d_" + os.urandom(6).hex(), owner=SENDER)
    project.use_store(url, SENDER_PASSWORD)
    return url


# -- SQLite: a store from before versioning, brought up and stamped ---------------------------------------------

@pytest.mark.parametrize("command", [["db", "upgrade"], ["status"]], ids=["db upgrade", "any command"])
def test_an_sqlite_store_from_before_versioning_is_brought_up_stamped_1_and_keeps_its_rows(project, command):
    path = store_path(project)
    path.parent.mkdir(parents=True)
    old = sqlite3.connect(path)
    old.executescript(OLD_SCHEMA)
    old.close()
    assert project.cli("db", "version", check=True).stdout == (
        f"store publisher.sqlite3: schema version 0, this publisher needs {LATEST}; run 'publisher db upgrade'\n")

    proc = project.cli(*command, check=True)
    if command == ["db", "upgrade"]:
        assert proc.stdout == f"store publisher.sqlite3: applied version 1: {MIGRATIONS[0].description}\n"
    db = sqlite3.connect(path)
    assert versions(db) == [1]
    assert db.execute("SELECT id, email FROM subscribers").fetchall() == [(7, "claire@example.org")]
    assert db.execute("SELECT holder, state FROM deliveries ORDER BY channel").fetchall() == [(None, "sent"), (None, "failed")]
    assert db.execute("SELECT finished_at, outcome FROM runs").fetchall() == [("2025-01-06T08:01:00+00:00", None)]
    assert kept_counts(db) == full_count(db) == {("endurance/2025-W02", "email", "sent"): 1,
                                                 ("endurance/2025-W02", "x", "failed"): 1}
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"origins", "feedback", "users", "approvals", "delivery_counts"} <= tables
    db.close()

    assert project.cli("db", "upgrade", check=True).stdout == "store publisher.sqlite3: up to date at version 1\n"
    assert project.cli("db", "version", check=True).stdout == "store publisher.sqlite3: schema version 1, up to date\n"
    db = sqlite3.connect(path)
    assert versions(db) == [1]  # the second upgrade applied nothing
    db.close()


# -- the runner, with a migration list that has a version 2 -----------------------------------------------------

def test_a_version_2_applies_once_on_open_on_sqlite_and_only_through_upgrade_on_postgresql(store_target):
    Store(store_target).close()  # a new store: created at the latest version
    custom = (*MIGRATIONS, V2)
    store = Store(store_target, check_schema=False)
    assert store.schema_version() == (1, LATEST)
    if store.dialect == "sqlite":
        open_schema(store.conn, store.dialect, store.where, custom)  # SQLite upgrades itself on open
        assert versions(store.conn) == [1, 2]
    else:
        with pytest.raises(ConfigError) as refused:
            open_schema(store.conn, store.dialect, store.where, custom)
        assert str(refused.value) == (f"store {store.where}: schema version 1, this publisher needs 2;"
                                      " run 'publisher db upgrade'")
        assert versions(store.conn) == [1]
        seen = []
        assert store.upgrade(seen.append, custom) == [V2] and seen == [V2]
        assert versions(store.conn) == [1, 2]
    assert store.upgrade(migrations=custom) == []  # twice: nothing to do
    assert versions(store.conn) == [1, 2]
    index = ("SELECT 1 FROM sqlite_master WHERE name = 'articles_source'" if store.dialect == "sqlite"
             else "SELECT to_regclass('articles_source')")
    assert store.conn.execute(index).fetchone()[0]

    # a migration that fails leaves the store at the version before it, and applies nothing of itself
    broken = Migration(3, "a table, then a mistake", "CREATE TABLE extra (a TEXT); CREATE INDEX nope ON missing(a);")
    with pytest.raises(ConfigError) as failed:
        store.upgrade(migrations=(*custom, broken))
    assert str(failed.value).startswith(f"store {store.where}: cannot upgrade it (")
    assert versions(store.conn) == [1, 2]
    gone = ("SELECT 1 FROM sqlite_master WHERE name = 'extra'" if store.dialect == "sqlite"
            else "SELECT to_regclass('extra')")
    assert not (store.conn.execute(gone).fetchone() or [None])[0]
    store.close()


def test_a_new_store_is_created_at_the_latest_version_in_one_step(store_target):
    seen = []
    store = Store(store_target, check_schema=False)
    assert store.schema_version() == (None, LATEST)
    assert store.upgrade(seen.append, (*MIGRATIONS, V2)) == [*MIGRATIONS, V2] == seen
    assert versions(store.conn) == [1, 2]
    descriptions = [r[0] for r in store.conn.execute("SELECT description FROM schema_version ORDER BY version")]
    assert descriptions == [MIGRATIONS[0].description, V2.description]
    stamped = store.conn.execute("SELECT applied_at FROM schema_version").fetchone()[0]
    assert abs(datetime.fromisoformat(stamped) - datetime.now(timezone.utc)).total_seconds() < 3600
    store.close()


# -- a store ahead of the code; a PostgreSQL store behind it ---------------------------------------------------

@pytest.fixture
def both(any_project):
    return any_project


def test_a_store_ahead_of_this_publisher_is_refused_and_left_as_it_is(both):
    project = both
    project.cli("fetch", check=True)
    db = PgConnection(project.store_url, password=SENDER_PASSWORD) if project.store_url else sqlite3.connect(store_path(project))
    db.execute("INSERT INTO schema_version VALUES (9, '2027-01-01T00:00:00+00:00', 'from a newer publisher')")
    if not project.store_url:
        db.commit()
    articles = db.execute("SELECT count(*) FROM articles").fetchone()[0]
    where = project.store_url or "publisher.sqlite3"
    for command in (["status"], ["db", "upgrade"], ["fetch"]):
        proc = project.cli(*command)
        assert proc.returncode == 2, proc.stderr
        assert one_line(proc).endswith(f"schema version 9, newer than this publisher knows ({LATEST}); nothing was"
                                       " changed; upgrade publisher on this machine")
        assert where in one_line(proc)
    assert project.cli("db", "version", check=True).stdout.endswith("upgrade publisher on this machine\n")
    assert versions(db) == [1, 9]
    assert db.execute("SELECT count(*) FROM articles").fetchone()[0] == articles == 46
    db.close()


def test_a_postgresql_store_behind_is_refused_until_db_upgrade(project, postgres_server):
    url = pg_project(project, postgres_server)
    db = PgConnection(url, password=SENDER_PASSWORD)
    db.execute("BEGIN")
    create_postgres(db)  # what a build before the versioned schema made: the tables, no schema_version
    db.execute("INSERT INTO subscribers (email, created_at, updated_at) VALUES ('lea@example.org', 'x', 'x')")
    db.execute("COMMIT")

    for command in (["status"], ["fetch"]):
        proc = project.cli(*command)
        assert proc.returncode == 2
        assert one_line(proc) == (f"publisher: error: store {url}: schema version 0, this publisher needs {LATEST};"
                                  " run 'publisher db upgrade'")
    assert db.execute("SELECT to_regclass('schema_version')").fetchone()[0] is None  # nothing changed

    proc = project.cli("db", "upgrade", check=True)
    assert proc.stdout == f"store {url}: applied version 1: {MIGRATIONS[0].description}\n"
    assert project.cli("db", "upgrade", check=True).stdout == f"store {url}: up to date at version 1\n"
    assert project.cli("fetch").returncode == 0
    assert versions(db) == [1]
    assert db.execute("SELECT email FROM subscribers").fetchall() == [("lea@example.org",)]
    db.close()


def test_processes_opening_a_new_postgresql_store_at_once_all_succeed_and_one_creates_it(project, postgres_server):
    url = pg_project(project, postgres_server)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")} | project.env
    procs = [subprocess.Popen([sys.executable, "-m", "publisher", "--settings", str(project.settings), "status"],
                              cwd=project.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    outcomes = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert [code for code, _ in outcomes] == [0, 0, 0, 0], outcomes
    db = PgConnection(url, password=SENDER_PASSWORD)
    assert versions(db) == [1]
    db.close()


# -- db copy ---------------------------------------------------------------------------------------------------

def _sign_up(project, address: str) -> None:
    with serving(project, env=ENV | project.env) as (_, unsubscribe):
        base = unsubscribe.rsplit("/", 1)[0]
        page = request(f"{base}/subscribe/endurance")[1]
        form = {"csrf": csrf(page), "form": "endurance", "email": address, "name": "", "website": "", "consent": "yes",
                "list": "endurance"}
        assert request(f"{base}/subscribe", urlencode(form).encode())[0] == 200


def _status(project) -> str:
    return project.cli("--now", NOW, "status", env=ENV, check=True).stdout


@pytest.mark.slow
def test_db_copy_moves_a_used_sqlite_store_into_postgresql(project, postgres_server):
    project.cli("fetch", check=True)
    (project.root / "subs.csv").write_text("email,name,series\nanne@example.org,Anne,endurance\n"
                                           "bruno@example.org,Bruno,endurance\n", encoding="utf-8")
    project.cli("subscribers", "import", "subs.csv", check=True)
    project.cli(*send_args(), env=ENV, check=True)
    _sign_up(project, "chloe@example.org")
    outbox = sorted(p.relative_to(project.root) for p in (project.root / "var" / "outbox").rglob("*") if p.is_file())
    assert outbox
    on_sqlite = _status(project)
    old = sqlite3.connect(store_path(project))
    rows = {t: old.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("articles", "subscribers", "subscriptions", "origins", "consents", "signups", "deliveries", "runs")}
    assert rows["signups"] == 1 and rows["deliveries"] > 2 and rows["runs"] > 0
    max_subscriber = old.execute("SELECT max(id) FROM subscribers").fetchone()[0]
    max_origin = old.execute("SELECT max(id) FROM origins").fetchone()[0]
    ledger = old.execute("SELECT * FROM deliveries ORDER BY edition_key, channel, target").fetchall()
    runs = old.execute("SELECT rowid, * FROM runs ORDER BY rowid").fetchall()
    old.close()

    url = postgres_server.create_database("copy_" + os.urandom(6).hex(), owner=SENDER)
    proc = project.cli("db", "copy", "var/publisher.sqlite3", "--to", url,
                       env={"PUBLISHER_STORE_PASSWORD": SENDER_PASSWORD}, check=True)
    lines = proc.stdout.splitlines()
    assert lines[0] == f"copied var/publisher.sqlite3 into {url}:"
    printed = {line.split()[0]: int(line.split()[1]) for line in lines[1:-1]}
    assert {t: printed[t] for t in rows} == rows
    assert lines[-1] == (f'next: set store = "{url}" under [publisher] in {project.settings} and'
                         " PUBLISHER_STORE_PASSWORD in the environment, then start the scheduler again")
    assert "db copy deliveries: finished" in proc.stderr  # progress, as log lines off a terminal

    project.use_store(url, SENDER_PASSWORD)
    assert _status(project) == on_sqlite
    db = PgConnection(url, password=SENDER_PASSWORD)
    assert [tuple(r) for r in db.execute("SELECT * FROM deliveries ORDER BY edition_key, channel, target")] == [
        tuple(r) for r in ledger]
    assert [tuple(r) for r in db.execute("SELECT id, edition_key, channel, started_at, finished_at, outcome, seconds,"
                                         " summary FROM runs ORDER BY id")] == [tuple(r) for r in runs]
    assert kept_counts(db) == full_count(db) and sum(full_count(db).values()) == rows["deliveries"]
    assert versions(db) == [1]

    again = project.cli(*send_args(), env=ENV, check=True)  # the ledger came along: nothing goes out twice
    assert "0 sent" in again.stdout and " 2 sent" not in again.stdout, again.stdout
    assert sorted(p.relative_to(project.root) for p in (project.root / "var" / "outbox").rglob("*") if p.is_file()) == outbox

    (project.root / "more.csv").write_text("email,name,series\ndavid@example.org,David,endurance\n", encoding="utf-8")
    project.cli("subscribers", "import", "more.csv", check=True)  # the sequences start after the copied ids
    _sign_up(project, "emma@example.org")
    assert db.execute("SELECT id FROM subscribers WHERE email = 'david@example.org'").fetchone()[0] == max_subscriber + 1
    assert db.execute("SELECT max(id) FROM origins").fetchone()[0] == max_origin + 1
    assert db.execute("SELECT count(*) FROM signups").fetchone()[0] == 2
    db.close()


def test_db_copy_refuses_what_it_cannot_do_in_one_line(project, postgres_server):
    project.cli("fetch", check=True)
    url = postgres_server.create_database("full_" + os.urandom(6).hex(), owner=SENDER)
    store = Store(url, password=SENDER_PASSWORD)
    with store.transaction() as db:
        db.execute("INSERT INTO feed_state (source, ok) VALUES ('elsewhere.xml', 1)")
    store.close()
    pw = {"PUBLISHER_STORE_PASSWORD": SENDER_PASSWORD}

    proc = project.cli("db", "copy", "var/publisher.sqlite3", "--to", url, env=pw)
    assert proc.returncode == 2
    assert one_line(proc) == (f"publisher: error: db copy: {url} already has rows in feed_state; nothing was copied;"
                              " copy into a new empty database (nothing is ever overwritten)")

    empty = postgres_server.create_database("empty_" + os.urandom(6).hex(), owner=SENDER)
    wrong = project.cli("db", "copy", "var/publisher.sqlite3", "--to", empty, env={"PUBLISHER_STORE_PASSWORD": "not-it-4242"})
    assert wrong.returncode == 2 and "password authentication failed" in one_line(wrong)
    assert "not-it-4242" not in wrong.stdout + wrong.stderr
    inline = project.cli("db", "copy", "var/publisher.sqlite3", "--to", empty.replace("sender@", "sender:inline-4242@"))
    assert inline.returncode == 2 and "the URL holds a password" in one_line(inline)
    assert "inline-4242" not in inline.stdout + inline.stderr
    for bad in ("mysql://x@127.0.0.1/db", "postgresql://127.0.0.1"):
        proc = project.cli("db", "copy", "var/publisher.sqlite3", "--to", bad, env=pw)
        assert proc.returncode == 2 and one_line(proc).startswith("publisher: error: db copy: --to"), proc.stderr
    nowhere = project.cli("db", "copy", "var/publisher.sqlite3")  # [publisher].store is the SQLite file itself
    assert nowhere.returncode == 2 and "no PostgreSQL store to copy into" in one_line(nowhere)

    missing = project.cli("db", "copy", "var/old.sqlite3", "--to", empty, env=pw)
    assert missing.returncode == 2
    assert one_line(missing).startswith("publisher: error: db copy: var/old.sqlite3: no such file")
    assert not (project.root / "var" / "old.sqlite3").exists()

    # a scheduler (or a send) still holding its lease on the source
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(store_path(project))], cwd=project.root,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        busy = project.cli("db", "copy", "var/publisher.sqlite3", "--to", empty, env=pw)
    finally:
        holder.kill()
        holder.wait(timeout=30)
        holder.stdout.close()
    assert busy.returncode == 5
    assert one_line(busy).startswith(f"publisher: error: db copy: scheduler is held by pid {holder.pid} on ")
    assert one_line(busy).endswith("stop it first (the scheduler, or that send), then rerun the same command")
    target = PgConnection(empty, password=SENDER_PASSWORD)
    assert target.execute("SELECT to_regclass('articles')").fetchone()[0] is None  # no refusal touched it
    target.close()
    assert project.cli("db", "copy", "var/publisher.sqlite3", "--to", empty, env=pw).returncode == 0  # once it stopped


_HOLDER = """
import sys, time
from datetime import datetime, timezone
from publisher.store.db import Store
store = Store(sys.argv[1])
store.acquire_lease("scheduler", datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc))
print("held", flush=True)
time.sleep(120)
"""


def test_a_copy_that_fails_half_way_leaves_the_target_empty(project, postgres_server):
    project.cli("fetch", check=True)
    old = sqlite3.connect(store_path(project))
    # a row PostgreSQL refuses (a subscription of nobody: SQLite did not check, foreign_keys off in this connection)
    old.execute("INSERT INTO subscriptions (subscriber_id, list) VALUES (999, 'endurance')")
    old.commit()
    old.close()
    url = postgres_server.create_database("half_" + os.urandom(6).hex(), owner=SENDER)
    proc = project.cli("db", "copy", "var/publisher.sqlite3", "--to", url, env={"PUBLISHER_STORE_PASSWORD": SENDER_PASSWORD})
    assert proc.returncode == 2
    line = one_line(proc)
    assert line.startswith(f"publisher: error: db copy: {url} refused the copy (") and "the target was left empty" in line
    db = PgConnection(url, password=SENDER_PASSWORD)
    assert db.execute("SELECT count(*) FROM articles").fetchone()[0] == 0
    assert versions(db) == [1]  # created at the latest version, then the copy rolled back as one
    db.close()
