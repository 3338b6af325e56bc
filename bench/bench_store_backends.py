"""Store backends benchmark: what the delivery ledger costs per row on PostgreSQL next to SQLite.

    .venv/bin/python bench/bench_store_backends.py                              # 1,000 / 20,000 / 100,000 rows
    .venv/bin/python bench/bench_store_backends.py --sizes 1000 --rounds 1      # a quick run
    .venv/bin/python bench/bench_store_backends.py --pg-durability async        # PostgreSQL without commit flushes

For each edition size, in alternating rounds (SQLite first in odd rounds, PostgreSQL first in even ones),
each backend gets a fresh store (an SQLite file in a temporary folder, a fresh database on a private
PostgreSQL server on 127.0.0.1, started by bench/pgserver.py) and runs the ledger calls of one email send
through publisher.store.ledger.Ledger, as the email channel makes them:

  plan     Ledger.plan of every address (its own batches of 5,000 rows per transaction);
  claim    Ledger.claim_range of BATCH rows (publisher/channels/email/channel.py) from a cursor, until none;
  finish   Ledger.finish of each claimed batch (1% failed), attempts counted, as the channel records replies;
  counts   Ledger.counts of the finished edition, what `publisher status` reads (per call, not per row).

It prints µs per row of each step (median of the rounds) and PostgreSQL ÷ SQLite. Both run on this
machine: the PostgreSQL figures include a loopback round trip per statement, which a server on another
machine makes longer. The durability of each (see bench/pgserver.py) is printed with the table: SQLite in
WAL mode with synchronous=NORMAL does not flush the disk at each commit; PostgreSQL by default (`full`)
does, so `--pg-durability async` is the like-for-like figure and `full` the one a deployment pays.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pgserver  # bench/pgserver.py (puts the repository on sys.path)

from publisher.channels.email.channel import BATCH
from publisher.models import State
from publisher.store.db import Store
from publisher.store.ledger import Ledger

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
KEY = "endurance/2026-W47"
BACKENDS = ("sqlite", "postgresql")
STEPS = ("plan", "claim", "finish")


def one_send(store: Store, rows: int, counts_calls: int) -> dict[str, float]:
    """Seconds spent in each ledger step of one email send of `rows` addresses; `counts` per call."""
    ledger = Ledger(store, clock=lambda: NOW)
    targets = [f"lecteur{i:07d}@example.org" for i in range(rows)]
    spent = dict.fromkeys(STEPS, 0.0)
    t = time.perf_counter()
    assert ledger.plan(KEY, "email", targets) == rows
    spent["plan"] = time.perf_counter() - t
    cursor, done = "", 0
    while True:
        t = time.perf_counter()
        claimed = ledger.claim_range(KEY, "email", BATCH, cursor, NOW)
        spent["claim"] += time.perf_counter() - t
        if not claimed:
            break
        cursor = claimed[-1][0]
        results = [(c, State.FAILED if (done + i) % 100 == 0 else State.SENT, f"<{i}.{c}>", "250 2.0.0 queued")
                   for i, (c, _) in enumerate(claimed)]
        t = time.perf_counter()
        ledger.finish(KEY, "email", results, count_attempt=True)
        spent["finish"] += time.perf_counter() - t
        done += len(claimed)
    assert done == rows, (done, rows)
    t = time.perf_counter()
    for _ in range(counts_calls):
        got = ledger.counts(KEY, "email")
    spent["counts"] = (time.perf_counter() - t) / counts_calls
    assert got["sent"] + got["failed"] == rows and got["failed"] == (rows + 99) // 100, got
    return spent


def fresh_store(backend: str, server, tmp: Path, name: str) -> tuple[Store, Callable[[], None]]:
    """A new empty store and what removes it after its run."""
    if backend == "sqlite":
        path = tmp / f"{name}.sqlite3"
        store = Store(path)

        def drop() -> None:
            store.close()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return store, drop
    store = Store(server.create_database(name))

    def drop_db() -> None:
        store.close()
        with pgserver.psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}"')
    return store, drop_db


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} µs"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000,20000,100000", help="edition sizes in rows, comma-separated (default 1000,20000,100000)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per backend (default 3)")
    p.add_argument("--counts-calls", type=int, default=200, help="Ledger.counts calls timed per round (default 200)")
    p.add_argument("--pg-durability", choices=sorted(pgserver.DURABILITY), default="full",
                   help="full: fsync and synchronous_commit on (default, a deployment); async: synchronous_commit off;"
                        " none: fsync off, as the tests run it")
    a = p.parse_args()
    sizes = [int(x) for x in a.sizes.split(",")]
    started = time.perf_counter()
    server = pgserver.start(a.pg_durability)
    table = []
    try:
        print(f"SQLite {sqlite3.sqlite_version} (WAL, synchronous=NORMAL) in {tempfile.gettempdir()}; python {sys.version.split()[0]}")
        print(pgserver.describe(server) + f"  [--pg-durability {a.pg_durability}]")
        with tempfile.TemporaryDirectory(prefix="bench-backends-") as tmp_name:
            tmp = Path(tmp_name)
            for size in sizes:
                found: dict[str, list[dict[str, float]]] = {b: [] for b in BACKENDS}
                for r in range(a.rounds):
                    for backend in (BACKENDS if r % 2 == 0 else BACKENDS[::-1]):
                        store, drop = fresh_store(backend, server, tmp, f"b_{size}_{r}_{os.urandom(3).hex()}")
                        try:
                            t = time.perf_counter()
                            spent = one_send(store, size, a.counts_calls)
                            found[backend].append(spent)
                        finally:
                            drop()
                        print(f"  {size:,} rows, round {r + 1}, {backend:<10} {time.perf_counter() - t:6.2f}s  "
                              + "  ".join(f"{s} {us(spent[s] / size)}/row" for s in STEPS), file=sys.stderr)
                table.append((size, {b: {s: statistics.median(run[s] for run in found[b]) for s in (*STEPS, "counts")}
                                     for b in BACKENDS}))
    finally:
        server.stop()

    print(f"\nledger cost of one email send (claims and finishes of {BATCH} rows per transaction); median of {a.rounds}"
          f" alternating rounds; µs per row, counts per call\n")
    print(f"{'rows':>9}  {'step':<8}{'SQLite':>14}{'PostgreSQL':>14}{'PG/SQLite':>11}")
    for size, med in table:
        for step in (*STEPS, "total", "counts"):
            if step == "total":
                lite, pg = (sum(med[b][s] for s in STEPS) / size for b in BACKENDS)
            elif step == "counts":
                lite, pg = med["sqlite"]["counts"], med["postgresql"]["counts"]
            else:
                lite, pg = med["sqlite"][step] / size, med["postgresql"][step] / size
            label = "counts/call" if step == "counts" else step
            print(f"{size:>9,}  {label:<12}{us(lite):>10}{us(pg):>14}{pg / lite:>10.1f}×")
        total = {b: sum(med[b][s] for s in STEPS) for b in BACKENDS}
        print(f"{'':>9}  {'rows/s':<12}{size / total['sqlite']:>10,.0f}{size / total['postgresql']:>14,.0f}")
    print(f"\nbench took {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
