"""A project copy set up for live email sends to a local SMTP server (shared by the email tests)."""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime
from pathlib import Path

from publisher.app import Context
from publisher.pipeline import fetch
from publisher.store.backend import PgConnection
from publisher.subscribers import import_csv

NOW = "2026-11-23T09:00:00+01:00"  # Monday of week 48: the edition 2026-W47 of `endurance` is due
EDITION = "2026-W47"
SECRET = "test-unsubscribe-secret-0123456789"
ENV = {"PUBLISHER_UNSUBSCRIBE_SECRET": SECRET}


def configure_live(project, port: int, **smtp) -> None:
    """Point the copy's [smtp] at 127.0.0.1:port without TLS, delivery live, email only for endurance."""
    text = project.settings.read_text(encoding="utf-8")
    extra = "".join(f"{k} = {v!r}\n" if not isinstance(v, str) else f'{k} = "{v}"\n' for k, v in smtp.items())
    table = f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n{extra}\n'
    text = re.sub(r"(?ms)^\[smtp\]\n.*?(?=^\[)", table, text)
    text = text.replace('delivery = "outbox"', 'delivery = "live"')
    project.write_settings(text)
    for f in (project.root / "campaigns").glob("*.toml"):
        f.write_text(re.sub(r"(?m)^channels = .*$", 'channels = ["email"]', f.read_text(encoding="utf-8")), encoding="utf-8")


def live_without_subscribers(project, port: int) -> None:
    """Live delivery to the local SMTP server, the sample feeds fetched, no subscriber yet (sign-up tests)."""
    configure_live(project, port)
    ctx = Context.open(project.settings, now=datetime.fromisoformat(NOW))
    try:
        assert all(r.ok for r in fetch(ctx))
    finally:
        ctx.close()


def write_subscribers(project, n: int, series: str = "wec", domain: str = "example.org") -> list[str]:
    """A CSV of n subscribers on `series`, imported with the CLI; returns the addresses."""
    path = project.root / "subs.csv"
    addrs = [f"lecteur{i:05d}@{domain}" for i in range(n)]
    with path.open("w", encoding="utf-8") as fh:
        fh.write("email,name,series,locale\n")
        for i, a in enumerate(addrs):
            fh.write(f"{a},Lecteur {i} Éà,{series},fr_FR\n")
    ctx = Context.open(project.settings, now=datetime.fromisoformat(NOW))
    try:
        report = import_csv(ctx.store, path, ctx.now)
    finally:
        ctx.close()
    assert not report.rejected, report.rejected
    return addrs


def prepared(project, port: int, n: int, **smtp) -> list[str]:
    """Live settings, the sample feeds fetched, n subscribers: ready for `publisher send endurance`.

    Set up in this process (the send itself runs as a subprocess): starting the CLI costs a second.
    """
    configure_live(project, port, **smtp)
    ctx = Context.open(project.settings, now=datetime.fromisoformat(NOW))
    try:
        assert all(r.ok for r in fetch(ctx))
    finally:
        ctx.close()
    return write_subscribers(project, n)


def send_args(*extra: str) -> list[str]:
    return ["--now", NOW, "send", "endurance", "--edition", EDITION, *extra]


def connect(project):
    """A connection to the copy's store: its SQLite file, or its PostgreSQL database (any_project)."""
    if project.store_url:
        return PgConnection(project.store_url, password=project.env["PUBLISHER_STORE_PASSWORD"])
    return sqlite3.connect(store_path(project))


def write(project, sql: str, args: tuple = ()) -> None:
    """One statement on the copy's store, committed (an operator's change made from outside)."""
    db = connect(project)
    try:
        db.execute(sql, args)
        if not project.store_url:
            db.commit()
    finally:
        db.close()


def ledger(project) -> dict[str, tuple[str, str | None]]:
    """target -> (state, reply) of the email rows of the edition, read straight from the store."""
    db = connect(project)
    try:
        return {t: (s, r) for t, s, r in db.execute(
            "SELECT target, state, reply FROM deliveries WHERE edition_key=? AND channel='email'", (f"endurance/{EDITION}",))}
    finally:
        db.close()


def attempts(project) -> dict[str, int]:
    """target -> attempts counted in the ledger (email rows of every edition), read straight from the store."""
    return dict(_query(project, "SELECT target, attempts FROM deliveries WHERE channel='email'"))


def _query(project, sql: str, args: tuple = ()) -> list[tuple]:
    db = connect(project)
    try:
        return [tuple(r) for r in db.execute(sql, args).fetchall()]
    finally:
        db.close()


def suppressed(project) -> dict[str, str]:
    """email -> reason of the suppression list, read straight from the store."""
    db = connect(project)
    try:
        return dict(db.execute("SELECT email, reason FROM suppression"))
    finally:
        db.close()


def store_path(project) -> Path:
    """The copy's SQLite store."""
    return project.root / "var" / "publisher.sqlite3"
