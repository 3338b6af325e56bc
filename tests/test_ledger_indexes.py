"""The ledger's per-post and status queries read an index range, never the whole history.

Checked on a real SQLite file with EXPLAIN QUERY PLAN of the statements the code runs, not with a timer
(bench/bench_history.py measures the time from 0 to 10 million rows).
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import datetime, timedelta, timezone

from publisher.models import State
from publisher.store.db import Store, iso
from publisher.store.ledger import Ledger
from support.query_plans import captured, deliveries_steps, unbounded

UTC = timezone.utc
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def history(store: Store, rows: int = 3000) -> None:
    """Old editions: email rows sent long ago, and a few posts a week on x and mastodon."""
    with store.transaction() as db:
        db.execute("WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
                   " INSERT INTO deliveries (edition_key, channel, target, state, attempts, updated_at)"
                   " SELECT printf('endurance/2025-W%02d', i / 100 % 52 + 1), 'email', printf('r%05d@example.org', i),"
                   " 'sent', 1, strftime('%Y-%m-%dT%H:%M:%S+00:00', 1735700000 + i * 600, 'unixepoch') FROM n", (rows - 1,))
        for week in range(1, 53):
            for net in ("x", "mastodon"):
                db.execute("INSERT INTO deliveries (edition_key, channel, target, state, updated_at) VALUES (?,?,?,?,?)",
                           (f"endurance/2025-W{week:02d}", net, "post:0", "sent",
                            iso(datetime(2025, 1, 1, 8, tzinfo=UTC) + timedelta(weeks=week - 1))))


def test_pacing_queries_read_the_sent_index_whatever_the_history(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    history(store)
    ledger = Ledger(store, clock=lambda: NOW)
    # this week: two posts on x, an hour apart; one is sent, one failed (not counted), one still planned
    ledger.plan("endurance/2026-W47", "x", ["post:0", "post:1", "post:2"])
    for t in ("post:0", "post:1"):
        assert ledger.claim_one("endurance/2026-W47", "x", t)
    ledger.clock = lambda: NOW - timedelta(hours=1)
    ledger.finish("endurance/2026-W47", "x", [("post:0", State.SENT, "1", "ok")])
    ledger.clock = lambda: NOW
    ledger.finish("endurance/2026-W47", "x", [("post:1", State.FAILED, None, "403")])

    with captured(store.conn) as statements:
        last = ledger.last_sent_at("x")
        times = ledger.sent_times("x", NOW - timedelta(days=1))
        assert ledger.last_sent_at("bluesky") is None
    assert last == NOW - timedelta(hours=1)  # not the failed post, not mastodon's, not an email's
    assert times == [NOW - timedelta(hours=1)]

    steps = deliveries_steps(store.conn, statements)
    assert len(steps) == 3
    assert not unbounded(steps), unbounded(steps)
    for found in steps.values():
        assert len(found) == 1 and "USING COVERING INDEX deliveries_sent (channel=? AND state=?" in found[0], found


def test_status_queries_of_a_large_edition_read_index_ranges(tmp_path):
    """counts, failures by reason, unknown rows, open rows and the channel list of an edition."""
    store = Store(tmp_path / "s.sqlite3")
    history(store)
    ledger, key = Ledger(store, clock=lambda: NOW), "endurance/2026-W47"
    targets = [f"r{i:05d}@example.org" for i in range(300)]
    ledger.plan(key, "email", targets)
    ledger.plan(key, "outbox:email", targets[:5])
    assert len(ledger.claim_range(key, "email", 200, "", NOW)) == 200
    ledger.finish(key, "email", [(t, State.FAILED if i % 10 == 0 else State.SENT, None, f"550 reason {i % 3}")
                                 for i, t in enumerate(targets[:190])])
    ledger.recover(key, "email")  # 10 rows left in sending become unknown
    ledger.retry_later(key, "email", [(t, NOW + timedelta(hours=1), "451 later") for t in targets[200:230]])
    assert ledger.claim_one(key, "outbox:email", targets[0])
    ledger.finish(key, "outbox:email", [(targets[0], State.FAILED, None, None)])  # no reply recorded

    with captured(store.conn) as statements:
        counts = ledger.counts(key)
        failures = ledger.failures(key, ["email", "outbox:email"], 2, 3)
        no_reply = ledger.failures(key, ["outbox:email"], 5, 3)
        unknown = ledger.first_targets(key, ["email", "outbox:email"], State.UNKNOWN, 4)
        open_rows = store.open_deliveries(key, NOW)
        channels = store.delivery_channels(key)
    assert counts == {"planned": 104, "sending": 0, "sent": 171, "failed": 20, "unknown": 10}
    assert failures == [("550 reason 0", 7, ["r00000@example.org", "r00030@example.org", "r00060@example.org"]),
                        ("550 reason 1", 6, ["r00010@example.org", "r00040@example.org", "r00070@example.org"])]
    assert no_reply == [(None, 1, ["r00000@example.org"])]
    assert unknown == ["r00190@example.org", "r00191@example.org", "r00192@example.org", "r00193@example.org"]
    assert open_rows == {"email": (100, 70), "outbox:email": (4, 4)}
    assert channels == ["email", "outbox:email"]

    steps = deliveries_steps(store.conn, statements)
    assert not unbounded(steps), unbounded(steps)
    used = " ".join(step for found in steps.values() for step in found)
    assert "COVERING INDEX deliveries_failed (edition_key=? AND channel=? AND state=? AND reply=?)" in used
    assert "INDEX deliveries_waiting (edition_key=? AND channel=? AND state=? AND not_before>?)" in used


def test_an_older_store_gets_the_indexes_and_keeps_its_rows(tmp_path, caplog):
    path = tmp_path / "old.sqlite3"
    Store(path).close()
    conn = sqlite3.connect(path)
    for name in ("deliveries_sent", "deliveries_failed", "deliveries_waiting"):
        conn.execute(f"DROP INDEX {name}")
    conn.execute("DROP TABLE schema_version")  # made before the schema had versions
    conn.execute("INSERT INTO deliveries (edition_key, channel, target, state, updated_at)"
                 " VALUES ('gt/2025-W01', 'x', 'post:0', 'sent', '2025-01-06T08:00:00+00:00')")
    conn.commit()
    conn.close()
    with caplog.at_level(logging.INFO, logger="publisher"):
        store = Store(path)
    assert [r.getMessage() for r in caplog.records] == [
        "store: adding the ledger indexes deliveries_sent, deliveries_failed, deliveries_waiting, once;"
        " a large ledger takes a minute"]
    names = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"deliveries_sent", "deliveries_failed", "deliveries_waiting"} <= names
    assert Ledger(store).last_sent_at("x") == datetime(2025, 1, 6, 8, tzinfo=UTC)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="publisher"):
        Store(path).close()  # built once: the next open says nothing
    assert not caplog.records
