"""History benchmark: the per-post pacing queries and `publisher status` as the ledger grows.

    .venv/bin/python bench/bench_history.py                                  # 0, 100k, 1M, 10M ledger rows
    .venv/bin/python bench/bench_history.py --sizes 0,100000 --edition-rows 0,100000   # a quick run

One store (a temporary SQLite file) grows from 0 to the largest size with old editions: mostly email rows
sent long ago (1% failed), and a dozen social posts per edition. At each size:

  pacing   Ledger.last_sent_at("x") and Ledger.sent_times("x", now - 24 h), what the social loop asks
           before every post; per call, median of alternating rounds, next to the same SQL forced onto
           the plan it had before the deliveries_sent index (INDEXED BY deliveries_state: every row read;
           a few rounds only once it takes seconds);
  status   `publisher status` in-process (status.report for every campaign) on a small current edition.

Then, on the largest store, the edition that status reports grows to --edition-rows (97% sent, 1% failed
over 20 reasons, 1% unknown, 1% pending of which a tenth wait for a retry time): status.report in-process
and the `publisher status` command as a subprocess, each against its 0-row case. Last, what the indexes
and the delivery_counts table (per-state counts kept by triggers) cost: building them on the largest
store (the first open after an upgrade), and plan/claim/finish of 20,000 email rows with and without
each (alternating rounds, medians).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench_import import project  # noqa: E402  (settings and campaigns in a temporary folder)

from publisher.app import (
    Context,  # noqa: E402
    load_settings,
)
from publisher.cli.status import report  # noqa: E402
from publisher.config import load_campaigns  # noqa: E402
from publisher.models import State  # noqa: E402
from publisher.store.db import Store, iso  # noqa: E402
from publisher.store.ledger import Ledger  # noqa: E402
from publisher.store.tables import migrate  # noqa: E402

UTC = timezone.utc
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # Monday, after the endurance slot
EDITION = "2026-W47"
KEY = f"endurance/{EDITION}"
PER_EDITION = 40_000  # email rows per old edition
NEW_INDEXES = ("deliveries_sent", "deliveries_failed", "deliveries_waiting")
OLD_LAST = "SELECT max(updated_at) FROM deliveries INDEXED BY deliveries_state WHERE channel=? AND state='sent'"
OLD_TIMES = ("SELECT updated_at FROM deliveries INDEXED BY deliveries_state WHERE channel=? AND state='sent'"
             " AND updated_at >= ? ORDER BY updated_at")

# Old editions, rows [?1, ?2) of the history: edition e = i / 40,000 of one of four campaigns, a week
# each, going back from 2026; the rows of an edition sent over its first 11 hours.
_HISTORY_EMAIL = """
WITH RECURSIVE n(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?2)
INSERT INTO deliveries (edition_key, channel, target, state, remote_id, reply, attempts, updated_at)
SELECT printf('%s/h%05d', CASE (i / 40000) % 4 WHEN 0 THEN 'endurance' WHEN 1 THEN 'gt' WHEN 2 THEN 'imsa'
              ELSE 'rallycross' END, i / 40000),
       'email', printf('reader%06d@example.org', i % 40000),
       CASE WHEN i % 100 = 7 THEN 'failed' ELSE 'sent' END,
       printf('<%d.bench@endurance-info.com>', i),
       CASE WHEN i % 100 = 7 THEN printf('550 5.1.1 <reader%06d@example.org>: no such user', i % 40000)
            ELSE printf('250 2.0.0 Ok: queued as %08X', i) END, 1,
       strftime('%Y-%m-%dT%H:%M:%S+00:00', 1763000000 - 86400 * 3 - (i / 40000) * 604800 + (i % 40000), 'unixepoch')
FROM n
"""
# A dozen posts per old edition: four on each network, an hour apart, the morning of the edition.
_HISTORY_SOCIAL = """
WITH RECURSIVE e(k) AS (SELECT ?1 UNION ALL SELECT k + 1 FROM e WHERE k + 1 < ?2),
     net(name) AS (VALUES ('x'), ('mastodon'), ('bluesky')),
     post(p) AS (VALUES (0), (1), (2), (3))
INSERT OR IGNORE INTO deliveries (edition_key, channel, target, state, remote_id, reply, attempts, updated_at)
SELECT printf('%s/h%05d', CASE k % 4 WHEN 0 THEN 'endurance' WHEN 1 THEN 'gt' WHEN 2 THEN 'imsa' ELSE 'rallycross' END, k),
       name, 'post:' || p, 'sent', printf('%d%d', k, p), 'ok', 1,
       strftime('%Y-%m-%dT%H:%M:%S+00:00', 1763000000 - 86400 * 3 - k * 604800 + p * 3600, 'unixepoch')
FROM e, net, post
"""
# The edition status reports, rows [?1, ?2): 97% sent, 1% failed over 20 reasons, 1% unknown, 1% planned
# (a tenth of them held back until an hour from now).
_EDITION = """
WITH RECURSIVE n(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?2)
INSERT INTO deliveries (edition_key, channel, target, state, remote_id, reply, attempts, not_before, updated_at)
SELECT ?3, 'email', printf('reader%07d@example.org', i),
       CASE i % 100 WHEN 3 THEN 'failed' WHEN 5 THEN 'unknown' WHEN 9 THEN 'planned' ELSE 'sent' END,
       printf('<%d.w47@endurance-info.com>', i),
       CASE i % 100 WHEN 3 THEN printf('550 5.7.1 rejected by policy %d', i / 100 % 20)
                    WHEN 5 THEN 'process stopped while this was on the wire; outcome unknown'
                    WHEN 9 THEN NULL ELSE printf('250 2.0.0 Ok: queued as %08X', i) END,
       1, CASE WHEN i % 1000 = 9 THEN ?4 END, ?5
FROM n WHERE i < ?2
"""


def seed_current(store: Store) -> None:
    """This week: the endurance edition frozen and sent, five posts on x in the last day (sent_times finds them)."""
    store.freeze_edition("endurance", EDITION, "c0ffee" * 8, "{}", NOW - timedelta(hours=2))
    for channel in ("email", "x"):
        run = store.start_run(KEY, channel, NOW - timedelta(hours=2))
        store.finish_run(run, NOW - timedelta(hours=1), 3600.0, "ok", f"{channel}: done")
    with store.transaction() as db:
        db.executemany("INSERT INTO deliveries (edition_key, channel, target, state, remote_id, attempts, updated_at)"
                       " VALUES (?, 'x', ?, 'sent', ?, 1, ?)",
                       [(KEY, f"post:{p}", str(p), iso(NOW - timedelta(hours=5 - p))) for p in range(5)])


def grow(store: Store, start: int, end: int, step: int = 1_000_000) -> None:
    """History rows [start, end), in transactions of a million rows."""
    for a in range(start, end, step):
        b = min(a + step, end)
        with store.transaction() as db:
            db.execute(_HISTORY_EMAIL, (a, b))
            db.execute(_HISTORY_SOCIAL, (a // PER_EDITION, (b - 1) // PER_EDITION + 1))


def per_call(fn, calls: int) -> float:
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t) / calls


def alternate(cases: dict, rounds: int, budget: float = 0.2, cap: float = 6.0) -> dict[str, float]:
    """Median seconds per call of each case, in alternating rounds; calls per round sized to `budget` seconds.

    A case slower than `cap` seconds in all (the full reads of a large ledger) stops taking rounds, so a
    10-million-row run stays within minutes; its median is over the rounds it took (at least one).
    """
    calls, found, spent = {}, {}, {}
    for name, fn in cases.items():
        once = per_call(fn, 1)  # also warms the page cache for every case alike
        calls[name], found[name], spent[name] = max(1, min(20_000, int(budget / max(once, 1e-7)))), [], once
    for _ in range(rounds):
        for name, fn in cases.items():
            if found[name] and spent[name] > cap:
                continue
            found[name].append(per_call(fn, calls[name]))
            spent[name] += found[name][-1] * calls[name]
    return {name: statistics.median(v) for name, v in found.items()}


def status_cli(settings: Path, rounds: int) -> float:
    """Median wall seconds of `publisher status` in a subprocess, start-up included."""
    # byte-code cached in the temporary folder, as an installed package has it (this sandbox may set
    # PYTHONDONTWRITEBYTECODE, which would time the compiler on every run)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_") and k != "PYTHONDONTWRITEBYTECODE"}
    env |= {"PYTHONPATH": str(REPO), "PYTHONPYCACHEPREFIX": str(settings.parent / "pycache")}
    times = []
    for _ in range(rounds + 1):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "publisher", "--settings", str(settings), "--now", NOW.isoformat(),
                        "status"], check=True, capture_output=True, env=env, cwd=settings.parent)
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:])  # the first run writes the byte-code cache


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms" if seconds < 0.01 else f"{seconds * 1000:.1f} ms"


def drop_indexes(store: Store) -> None:
    for name in NEW_INDEXES:
        store.conn.execute(f"DROP INDEX {name}")


def drop_counts(store: Store) -> None:
    store.conn.executescript("DROP TRIGGER deliveries_counted_insert; DROP TRIGGER deliveries_counted_delete;"
                             " DROP TRIGGER deliveries_counted_update; DROP TABLE delivery_counts;")


def write_cost(tmp: Path, rows: int, rounds: int, strip) -> tuple[float, float]:
    """Median seconds to plan, claim and finish `rows` email rows: (the store as shipped, after `strip(store)`)."""
    results: dict[bool, list[float]] = {True: [], False: []}
    for r in range(rounds * 2):
        with_indexes = r % 2 == 0
        path = tmp / f"write-{r}.sqlite3"
        store = Store(path)
        if not with_indexes:
            strip(store)
        ledger = Ledger(store, clock=lambda: NOW)
        targets = [f"w{i:06d}@example.org" for i in range(rows)]
        t = time.perf_counter()
        ledger.plan(KEY, "email", targets)
        cursor = ""
        while claimed := ledger.claim_range(KEY, "email", 500, cursor, NOW):
            cursor = claimed[-1][0]
            ledger.finish(KEY, "email", [(c, State.FAILED if i % 100 == 0 else State.SENT, f"<{c}>", "250 ok")
                                         for i, (c, _) in enumerate(claimed)], count_attempt=True)
        results[with_indexes].append(time.perf_counter() - t)
        store.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    return statistics.median(results[True]), statistics.median(results[False])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="0,100000,1000000,10000000", help="history rows (default 0,100000,1000000,10000000)")
    p.add_argument("--edition-rows", default="0,100000,1000000", help="rows of the reported edition (default 0,100000,1000000)")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds per measure (default 5)")
    p.add_argument("--tmp", help="folder for the store (default: a temporary folder; the 10M store takes ~3 GB)")
    a = p.parse_args()
    sizes = sorted(int(s) for s in a.sizes.split(","))
    edition_rows = sorted(int(s) for s in a.edition_rows.split(","))
    started = time.perf_counter()
    print(f"SQLite {sqlite3.sqlite_version}, python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="bench-history-", dir=a.tmp) as tmp_name:
        tmp = Path(tmp_name)
        settings = project(tmp)
        store = Store(tmp / "store.sqlite3")
        seed_current(store)
        ctx = Context(settings=load_settings(settings), now=NOW)
        campaigns = load_campaigns(ctx.settings)
        ledger = Ledger(store)
        since = NOW - timedelta(days=1)
        assert len(ledger.sent_times("x", since)) == 5

        print(f"\npacing and status as the history grows (per call, median of {a.rounds} alternating rounds)")
        print(f"{'ledger rows':>12}{'build':>8} | {'last_sent_at':>12}{'× 0 rows':>9}{'before':>11} |"
              f" {'sent_times':>11}{'× 0 rows':>9}{'before':>11} | {'status':>9}{'× 0 rows':>9}")
        have, first = 0, None
        for size in sizes:
            t = time.perf_counter()
            grow(store, have, size)
            have, built = size, time.perf_counter() - t
            got = alternate({"last": lambda: ledger.last_sent_at("x"), "old_last": lambda: store.conn.execute(OLD_LAST, ("x",)).fetchone(),
                             "times": lambda: ledger.sent_times("x", since),
                             "old_times": lambda: store.conn.execute(OLD_TIMES, ("x", iso(since))).fetchall(),
                             "status": lambda: report(ctx, campaigns, NOW)}, a.rounds)
            first = first or got
            print(f"{size:>12,}{built:>7.1f}s | {ms(got['last']):>12}{got['last'] / first['last']:>8.2f}×{ms(got['old_last']):>11} |"
                  f" {ms(got['times']):>11}{got['times'] / first['times']:>8.2f}×{ms(got['old_times']):>11} |"
                  f" {ms(got['status']):>9}{got['status'] / first['status']:>8.2f}×")

        print(f"\n`publisher status` on an edition of N rows, over {have:,} rows of history"
              f" (in-process: median of {a.rounds} rounds; command: median of 5 runs, start-up included)")
        print(f"{'edition rows':>12}{'build':>8} | {'status.report':>13}{'× 0 rows':>9} | {'publisher status':>16}{'× 0 rows':>9}")
        in_edition, base = 0, None
        for n in edition_rows:
            t = time.perf_counter()
            with store.transaction() as db:
                db.execute(_EDITION, (in_edition, n, KEY, iso(NOW + timedelta(hours=1)), iso(NOW - timedelta(hours=1))))
            in_edition, built = max(in_edition, n), time.perf_counter() - t
            inproc = alternate({"status": lambda: report(ctx, campaigns, NOW)}, a.rounds)["status"]
            cli = status_cli(settings, 5)
            base = base or (inproc, cli)
            goal = "" if n < 1_000_000 else f"   goal: the command under 300 ms: {'ok' if cli < 0.3 else 'MISSED'}"
            print(f"{n:>12,}{built:>7.1f}s | {ms(inproc):>13}{inproc / base[0]:>8.2f}× | {ms(cli):>16}{cli / base[1]:>8.2f}×{goal}")
        text = "\n".join(report(ctx, campaigns, NOW))
        print("\n".join(line for line in text.splitlines() if line.startswith("    email") or line.startswith("      "))[:1500])

        print("\nwhat the indexes and the counts cost")
        drop_indexes(store)
        t = time.perf_counter()
        migrate(store.conn)
        print(f"  building {', '.join(NEW_INDEXES)} on {have + in_edition:,} rows (first open after the upgrade):"
              f" {time.perf_counter() - t:.1f}s")
        drop_counts(store)
        t = time.perf_counter()
        migrate(store.conn)
        print(f"  counting {have + in_edition:,} rows into delivery_counts (first open after the upgrade):"
              f" {time.perf_counter() - t:.1f}s")
        ctx.close()
        store.close()
        for what, strip in (("the indexes", drop_indexes), ("the delivery_counts triggers", drop_counts)):
            shipped, without = write_cost(tmp, 20_000, 3, strip)
            print(f"  plan + claim + finish of 20,000 email rows (1% failed): {shipped:.2f}s as shipped, {without:.2f}s"
                  f" without {what} ({(shipped / without - 1) * 100:+.0f}%)")
    print(f"\nbench took {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
