"""The SQLite store: articles updated in place, leases that name their holder and expire."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from publisher.errors import LockedError
from publisher.models import Article
from publisher.store import Store, iso

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)


def a(i: int, **kw) -> Article:
    base = Article(id=f"guid-{i}", link=f"https://www.endurance-info.com/{i}", title=f"Titre {i}", summary="Résumé",
                   published=datetime(2026, 11, 20, 9, tzinfo=timezone.utc), categories=("WEC",))
    return replace(base, **kw)


def test_upsert_counts_and_updates_in_place(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
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


def test_lease_names_the_holder_and_is_taken_over_when_dead_or_expired(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        host = socket.gethostname()
        store.conn.execute("INSERT INTO leases VALUES (?,?,?,?,?,?)",
                           ("scheduler", f"pid {other.pid} on {host}", other.pid, host, iso(NOW), iso(NOW + timedelta(minutes=5))))
        with pytest.raises(LockedError, match=rf"scheduler is held by pid {other.pid} on {host}"):
            store.acquire_lease("scheduler", NOW, 60)
        # after its expiry the lease is free even though the holder still runs
        store.acquire_lease("scheduler", NOW + timedelta(minutes=6), 60)
        assert store.lease("scheduler")["pid"] == os.getpid()
    finally:
        other.kill()
        other.wait()
    # a lease left by a killed local process is taken over at once
    store.conn.execute("UPDATE leases SET pid=?, holder=?, expires_at=? WHERE name='scheduler'",
                       (other.pid, f"pid {other.pid} on {host}", iso(NOW + timedelta(hours=1))))
    store.acquire_lease("scheduler", NOW, 60)
    assert store.lease("scheduler")["pid"] == os.getpid()
    store.release_lease("scheduler")
    assert store.lease("scheduler") is None
