"""The store, on SQLite and on PostgreSQL: articles updated in place, leases that name their holder and live as
long as it does."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from publisher.errors import LockedError
from publisher.models import Article
from publisher.store.db import Store

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)


def a(i: int, **kw) -> Article:
    base = Article(id=f"guid-{i}", link=f"https://www.endurance-info.com/{i}", title=f"Titre {i}", summary="Résumé",
                   published=datetime(2026, 11, 20, 9, tzinfo=timezone.utc), categories=("WEC",))
    return replace(base, **kw)


def test_upsert_counts_and_updates_in_place(store_target):
    store = Store(store_target)
    c = store.upsert_articles([a(1), a(2)], NOW)
    assert (c.new, c.updated, c.unchanged) == (2, 0, 0)
    c = store.upsert_articles([a(1), a(2, title="Titre 2 (mis à jour)")], NOW)
    assert (c.new, c.updated, c.unchanged) == (0, 1, 1)
    # the same story under a new guid but the same canonical link is the same article
    c = store.upsert_articles([a(3, link="https://www.endurance-info.com/1", title="Titre 1 bis")], NOW)
    assert (c.new, c.updated) == (0, 1)
    assert store.article_count() == 2
    got = {x.id: x for x in store.articles_between(NOW - timedelta(days=7), NOW)}
    assert got["guid-2"].title == "Titre 2 (mis à jour)"
    assert got["guid-1"].title == "Titre 1 bis"
    assert got["guid-1"].published == datetime(2026, 11, 20, 9, tzinfo=timezone.utc)


_HOLDER = """
import sys, time
from datetime import datetime, timezone
from publisher.store.db import Store
store = Store(sys.argv[1])  # kept: on PostgreSQL the lease lives with this store's connection
store.acquire_lease("scheduler", datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc))
print("held", flush=True)
time.sleep(120)
"""


def _free_once_its_session_ends(store: Store, name: str) -> bool:
    """SQLite: the kernel drops a killed process's flock as it dies. PostgreSQL: the server ends the session
    when it reads the closed connection, a few milliseconds later; a live holder's lease never goes."""
    deadline = time.monotonic() + (0 if store.dialect == "sqlite" else 30)
    while store.lease(name) is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    return store.lease(name) is None


def test_a_live_holder_keeps_its_lease_whatever_the_clock_and_a_killed_one_frees_it_at_once(store_target):
    path = store_target
    store = Store(path)
    other = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        host = socket.gethostname()
        # a clock stepped a day or a year ahead (NTP, VM resume, --now) changes nothing while it lives
        for now in (NOW, NOW + timedelta(minutes=30), NOW + timedelta(days=365)):
            with pytest.raises(LockedError, match=rf"scheduler is held by pid {other.pid} on {host} since"):
                store.acquire_lease("scheduler", now)
        assert store.lease("scheduler").pid == other.pid
    finally:
        other.kill()  # SIGKILL: no clean-up, its row stays behind
        other.wait()
    assert store.conn.execute("SELECT pid FROM leases WHERE name='scheduler'").fetchone()[0] == other.pid
    assert _free_once_its_session_ends(store, "scheduler")  # a row without a live holder is not a lease
    store.acquire_lease("scheduler", NOW - timedelta(days=1))  # taken over at once, even with a clock behind
    assert store.lease("scheduler").pid == os.getpid()
    store.release_lease("scheduler")
    assert store.lease("scheduler") is None
