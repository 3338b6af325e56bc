"""delivery_counts: the per-state counts `publisher status` reads stay equal to the rows, whatever the ledger does."""

from __future__ import annotations

import random
import sqlite3
from datetime import datetime, timedelta, timezone

from publisher.models import State
from publisher.store.db import Store
from publisher.store.ledger import Ledger

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)


def counted(store: Store, key: str, channel: str | None = None) -> dict[str, int]:
    """The same counts, the slow way: every row read."""
    out = {s.value: 0 for s in State}
    q, args = "SELECT state, count(*) FROM deliveries WHERE edition_key=?", [key]
    if channel:
        q, args = q + " AND channel=?", [key, channel]
    for state, n in store.conn.execute(q + " GROUP BY state", args):
        out[state] = n
    return out


def test_counts_follow_every_ledger_operation(store_target):
    store = Store(store_target)  # SQLite triggers, or PostgreSQL's plpgsql trigger function
    ledger = Ledger(store, clock=lambda: NOW)
    rnd = random.Random(47)
    keys = ["endurance/2026-W47", "gt/2026-W47"]
    targets = [f"lecteur{i:03d}@example.org" for i in range(300)]
    assert ledger.plan(keys[0], "email", targets[:200]) == 200
    assert ledger.plan(keys[0], "email", targets) == 100  # only the new ones: a rerun adds nothing twice
    ledger.plan(keys[1], "email", targets[:50])
    ledger.plan(keys[0], "x", [f"post:{i}" for i in range(4)])
    with store.transaction() as db:
        db.executemany("INSERT INTO suppression (email, reason, created_at) VALUES (?, 'unsubscribed', ?) ON CONFLICT DO NOTHING",
                       [(t, NOW.isoformat()) for t in targets[::37]])
    for step in range(60):
        key = rnd.choice(keys)
        op = rnd.choice(["claim", "finish", "retry", "release", "recover", "resend", "drop", "claim_one"])
        if op == "claim":
            ledger.claim_range(key, "email", rnd.randint(1, 40), "", NOW)
        elif op in ("finish", "retry", "release"):
            held = ledger.sending(key, "email")[: rnd.randint(0, 30)]
            if op == "finish":
                ledger.finish(key, "email", [(t, rnd.choice([State.SENT, State.FAILED]), "id", "250 ok") for t in held],
                              count_attempt=True)
            elif op == "retry":
                ledger.retry_later(key, "email", [(t, NOW + timedelta(minutes=5), "451 later") for t in held])
            else:
                ledger.release(key, "email", held)
        elif op == "recover":
            ledger.recover(key, "email")
        elif op == "resend":
            ledger.resend_unknown(key, "email")
        elif op == "drop":
            ledger.drop_suppressed(key, "email")
        else:
            ledger.claim_one(keys[0], "x", f"post:{rnd.randint(0, 3)}")
        for k in keys:
            assert ledger.counts(k) == counted(store, k), (step, op, k)
            assert ledger.counts(k, "email") == counted(store, k, "email"), (step, op, k)
    assert ledger.counts(keys[0], "x") == counted(store, keys[0], "x")
    total = store.conn.execute("SELECT count(*) FROM deliveries WHERE edition_key=?", (keys[0],)).fetchone()[0]
    assert sum(ledger.counts(keys[0]).values()) == total
    store.close()


def test_a_store_from_before_the_counts_gets_them_on_first_open(tmp_path):
    path = tmp_path / "s.sqlite3"
    store = Store(path)
    ledger = Ledger(store, clock=lambda: NOW)
    key = "endurance/2026-W46"
    ledger.plan(key, "email", [f"r{i}@example.org" for i in range(500)])
    ledger.claim_range(key, "email", 120, "", NOW)
    ledger.finish(key, "email", [(t, State.SENT, "id", "250 ok") for t in ledger.sending(key, "email")[:100]])
    expected = counted(store, key)
    store.close()

    # what an older version's store looks like: no table, no triggers
    conn = sqlite3.connect(path)
    conn.executescript("DROP TRIGGER deliveries_counted_insert; DROP TRIGGER deliveries_counted_delete;"
                       " DROP TRIGGER deliveries_counted_update; DROP TABLE delivery_counts; DROP TABLE schema_version;")
    conn.close()

    store = Store(path)
    ledger = Ledger(store, clock=lambda: NOW)
    assert ledger.counts(key) == expected == {"planned": 380, "sending": 20, "sent": 100, "failed": 0, "unknown": 0}
    ledger.recover(key, "email")  # and the triggers keep them from now on
    assert ledger.counts(key) == counted(store, key) == {"planned": 380, "sending": 0, "sent": 100, "failed": 0,
                                                           "unknown": 20}
    names = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    assert names == {"deliveries_counted_insert", "deliveries_counted_delete", "deliveries_counted_update"}
    store.close()


def test_forgetting_an_address_whose_hash_already_has_a_row_keeps_the_counts(store_target):
    """Forgotten, back, forgotten again: the second row under the hash is dropped, and counted as dropped."""
    from publisher.store.audience import HASH_PREFIX, forget

    store = Store(store_target)
    ledger = Ledger(store, clock=lambda: NOW)
    key = "endurance/2026-W47"
    ledger.plan(key, "email", ["camille@example.org", HASH_PREFIX + "abc", "lucas@example.com"])
    ledger.claim_range(key, "email", 10, "", NOW)
    ledger.finish(key, "email", [(t, State.SENT, "id", "250 ok") for t in ledger.sending(key, "email")])
    done = forget(store, "camille@example.org", "abc")
    assert done.deliveries == 1
    assert ledger.counts(key) == counted(store, key) == {"planned": 0, "sending": 0, "sent": 2, "failed": 0, "unknown": 0}
    store.close()
