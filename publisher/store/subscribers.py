"""Subscribers, their lists and the suppression list in SQLite.

A subscriber is one normalised address with a name, a locale and the lists it is on (a campaign's
list name or a series name). The suppression list (unsubscribed, hard-bounce, complaint, manual) wins
over everything: no send plans a suppressed address, and an import never takes one off the list.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable, Iterator

from publisher.store.backend import SQLITE
from publisher.store.db import Store, iso

SUPPRESSION_REASONS = ("unsubscribed", "hard-bounce", "complaint", "manual")
_LIST_SEPARATORS = re.compile(r"[;|,\s]+")


def split_lists(text: str) -> list[str]:
    """The list names in `text` ("wec; imsa"), lower-cased."""
    return [p.lower() for p in _LIST_SEPARATORS.split(text or "") if p]


@dataclass(frozen=True)
class SubscriberRow:
    email: str
    name: str = ""
    lists: tuple[str, ...] = ()
    locale: str = ""
    consent: "Consent | None" = None  # what an export says about the opt-in (Mailchimp's OPTIN_TIME, ...)


@dataclass(frozen=True)
class Consent:
    """The proof that goes with an opt-in: where it came from, when, from which IP, which consent text."""

    source: str
    given_at: str | None = None
    ip: str | None = None
    consent: str | None = None
    confirmed_at: str | None = None
    confirm_ip: str | None = None

    @property
    def proof(self) -> bool:
        """Whether there is more to keep than the source (which each subscription row already names)."""
        return any((self.given_at, self.ip, self.consent, self.confirmed_at, self.confirm_ip))


MAX_KEPT_REJECTS = 100  # rejected rows kept (and printed) with line and reason; the rest are only counted


@dataclass
class ImportReport:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    suppressed: int = 0  # stored, but on the suppression list: they stay unsubscribed
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line, reason), the first MAX_KEPT_REJECTS
    rejected_count: int = 0  # all of them: a file of garbage must not fill the memory with reasons
    to_suppression: int = 0  # rows of an unsubscribed/cleaned/blocklisted export, put on the suppression list
    forgotten: int = 0  # rows of addresses erased with `subscribers forget` (their hash is suppressed): skipped
    left_out: int = 0  # lists a row names that its reader unsubscribed from: not re-added

    def reject(self, line: int, reason: str) -> None:
        """Count a bad row; keep its line and reason if it is among the first MAX_KEPT_REJECTS."""
        self.rejected_count += 1
        if len(self.rejected) < MAX_KEPT_REJECTS:
            self.rejected.append((line, reason))

    def line(self, source: str) -> str:
        return (f"{source}: {self.new} new, {self.updated} updated, {self.unchanged} unchanged, "
                f"{self.rejected_count} rejected" + (f", {self.suppressed} suppressed (kept unsubscribed)" if self.suppressed else "")
                + (f", {self.to_suppression} added to the suppression list" if self.to_suppression else "")
                + (f", {self.forgotten} forgotten (not imported)" if self.forgotten else "")
                + (f", {self.left_out} list(s) left out (the reader unsubscribed from them)" if self.left_out else ""))


def upsert(store: Store, rows: Iterable[SubscriberRow], now: datetime, batch: int = 5000, report: ImportReport | None = None) -> ImportReport:
    """Add or update subscribers; names and locales are only replaced by non-empty values, lists only added.

    One transaction per `batch` rows, with a handful of statements each: what the batch's addresses
    already have is read in three queries, the rows are applied in file order in Python (a later row for
    the same address updates the earlier one), and the writes go out with executemany.
    """
    report = report or ImportReport()
    chunk: list[SubscriberRow] = []
    for r in rows:
        chunk.append(r)
        if len(chunk) >= batch:
            _upsert_batch(store, chunk, iso(now), report)
            chunk.clear()
    if chunk:
        _upsert_batch(store, chunk, iso(now), report)
    return report


def _upsert_batch(store: Store, chunk: list[SubscriberRow], stamp: str, report: ImportReport) -> None:
    emails = json.dumps(list({r.email: None for r in chunk}))
    # the chunk's addresses as a table j(value), from one JSON parameter
    each = "json_each(?) j" if store.dialect == SQLITE else "json_array_elements_text(CAST(? AS json)) AS j(value)"
    with store.transaction() as db:
        people = {r[0]: [r[1], r[2], False] for r in db.execute(  # email -> [name, locale, changed]
            "SELECT s.email, s.name, s.locale FROM " + each + " JOIN subscribers s ON s.email = j.value", (emails,))}
        lists = {(r[0], r[1]) for r in db.execute("SELECT s.email, x.list FROM " + each + " JOIN subscribers s"
                                                  " ON s.email = j.value JOIN subscriptions x ON x.subscriber_id = s.id",
                                                  (emails,))}
        suppressed = {r[0] for r in db.execute("SELECT p.email FROM " + each + " JOIN suppression p ON p.email = j.value",
                                               (emails,))}
        # the reader's last word on each list: a list they left (one-click, preferences) is not re-added by an import
        last_word: dict[tuple[str, str], str] = {}
        for email, kind, names in db.execute("SELECT c.email, c.kind, c.lists FROM " + each + " JOIN consents c"
                                             " ON c.email = j.value ORDER BY c.id", (emails,)):
            last_word.update(((email, lst), kind) for lst in split_lists(names))
        new: dict[str, None] = {}
        added: list[tuple[str, str, str | None]] = []  # (email, list, source)
        proofs: list[tuple] = []  # a consent row for each row that added subscriptions with an export's proof
        for r in chunk:
            person = people.get(r.email)
            if person is None:
                people[r.email] = [r.name, r.locale, False]
                new[r.email] = None
            else:
                name, locale = r.name or person[0], r.locale or person[1]
                changed = (name, locale) != (person[0], person[1])
                if changed:
                    person[:] = [name, locale, True]
            left = [lst for lst in r.lists if last_word.get((r.email, lst)) == "opt-out" and (r.email, lst) not in lists]
            report.left_out += len(left)
            fresh = [(r.email, lst) for lst in r.lists if (r.email, lst) not in lists and lst not in left]
            lists.update(fresh)
            source = r.consent.source if r.consent is not None else None
            added += [(e, lst, source) for e, lst in fresh]
            if fresh and r.consent is not None and r.consent.proof:
                c = r.consent
                proofs.append((r.email, ";".join(lst for _, lst in fresh), c.source, c.ip, c.consent, c.given_at,
                               c.confirmed_at, c.confirm_ip, stamp))
            if person is None:
                report.new += 1
            elif changed or fresh:
                report.updated += 1
            else:
                report.unchanged += 1
            if r.email in suppressed:
                report.suppressed += 1
        db.executemany("INSERT INTO subscribers (email, name, locale, created_at, updated_at) VALUES (?,?,?,?,?)",
                       [(e, *people[e][:2], stamp, stamp) for e in new])
        db.executemany("INSERT INTO consents (email, kind, lists, source, ip, consent, given_at, confirmed_at, confirm_ip,"
                       " recorded_at) VALUES (?, 'opt-in', ?,?,?,?,?,?,?,?)", proofs)
        db.executemany("UPDATE subscribers SET name=?, locale=?, updated_at=? WHERE email=?",
                       [(p[0], p[1], stamp, e) for e, p in people.items() if p[2] and e not in new])
        origins = {source: origin(db, source, stamp) for source in {a[2] for a in added} if source}
        db.executemany("INSERT INTO subscriptions (subscriber_id, list, origin) SELECT id, ?, ? FROM subscribers"
                       " WHERE email=? ON CONFLICT DO NOTHING", [(lst, origins.get(source), e) for e, lst, source in added])


def origin(db, source: str, stamp: str) -> int:
    """The id of a new origins row (an import run, a confirmed sign-up, a preferences change), inside a transaction."""
    return db.execute("INSERT INTO origins (source, at) VALUES (?, ?) RETURNING id", (source, stamp)).fetchone()[0]


def suppress(store: Store, email: str, reason: str, now: datetime, detail: str | None = None) -> bool:
    """Put an address on the suppression list (first reason kept); True if it was not there yet."""
    if reason not in SUPPRESSION_REASONS:
        raise ValueError(reason)
    with store.transaction() as db:
        cur = db.execute("INSERT INTO suppression (email, reason, detail, created_at) VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
                         (email, reason, detail, iso(now)))
        return cur.rowcount == 1


def suppression_reason(store: Store, email: str) -> str | None:
    r = store.conn.execute("SELECT reason FROM suppression WHERE email=?", (email,)).fetchone()
    return r[0] if r else None


def remove(store: Store, email: str, now: datetime) -> bool:
    """Delete a subscriber and suppress the address (reason `manual`); True if a subscriber was deleted."""
    with store.transaction() as db:
        cur = db.execute("DELETE FROM subscribers WHERE email=?", (email,))
        db.execute("INSERT INTO suppression (email, reason, detail, created_at) VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
                   (email, "manual", "publisher subscribers remove", iso(now)))
        return cur.rowcount == 1


def lists_of(store: Store, email: str) -> list[str]:
    return [r[0] for r in store.conn.execute(
        "SELECT x.list FROM subscriptions x JOIN subscribers s ON s.id = x.subscriber_id WHERE s.email=? ORDER BY x.list", (email,))]


def set_lists(store: Store, email: str, keep: Iterable[str], choosable: Iterable[str], now: datetime) -> None:
    """Preferences: among `choosable` lists, keep the subscriber on exactly `keep`."""
    keep, choosable = {k.lower() for k in keep}, {c.lower() for c in choosable}
    with store.transaction() as db:
        row = db.execute("SELECT id FROM subscribers WHERE email=?", (email,)).fetchone()
        if row is None:
            return
        came = origin(db, "preferences page", iso(now)) if keep else None
        for lst in choosable:
            if lst in keep:
                db.execute("INSERT INTO subscriptions (subscriber_id, list, origin) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                           (row[0], lst, came))
            else:
                db.execute("DELETE FROM subscriptions WHERE subscriber_id=? AND list=?", (row[0], lst))
        db.execute("UPDATE subscribers SET updated_at=? WHERE id=?", (iso(now), row[0]))


def plan_recipients(store: Store, edition_key: str, channel: str, lists: Iterable[str], stamp: str) -> int:
    """Ledger rows for everyone on any of `lists` and not suppressed, one per address; returns rows added.

    One INSERT ... SELECT: the subscriber list never passes through Python memory.
    """
    names = sorted({n.lower() for n in lists})
    marks = ",".join("?" * len(names))
    with store.transaction() as db:
        cur = db.execute(
            "INSERT INTO deliveries (edition_key, channel, target, state, updated_at)"
            " SELECT ?, ?, s.email, 'planned', ? FROM subscribers s"
            f" WHERE EXISTS (SELECT 1 FROM subscriptions x WHERE x.subscriber_id = s.id AND x.list IN ({marks}))"
            " AND NOT EXISTS (SELECT 1 FROM suppression p WHERE p.email = s.email) ON CONFLICT DO NOTHING",
            (edition_key, channel, stamp, *names))
        added = cur.rowcount
    store.planned(added)
    return added


@dataclass(frozen=True)
class Counts:
    """Subscribers per list and in total (suppressed addresses left out), and suppressed addresses per reason."""

    per_list: list[tuple[str, int]]
    total: int
    suppressed: list[tuple[str, int]]


def counts(store: Store, list_name: str | None = None) -> Counts:
    """What `publisher subscribers count` reports, for every list or one."""
    db = store.conn
    q = ("SELECT x.list, count(*) FROM subscriptions x JOIN subscribers s ON s.id = x.subscriber_id"
         " WHERE NOT EXISTS (SELECT 1 FROM suppression p WHERE p.email = s.email)")
    args: tuple = ()
    if list_name:
        q += " AND x.list = ?"
        args = (list_name.lower(),)
    per_list = [(lst, n) for lst, n in db.execute(q + " GROUP BY x.list ORDER BY x.list", args)]
    total = db.execute("SELECT count(*) FROM subscribers s WHERE NOT EXISTS"
                       " (SELECT 1 FROM suppression p WHERE p.email = s.email)").fetchone()[0]
    return Counts(per_list, total, suppressed_by_reason(store))


def suppressed_by_reason(store: Store) -> list[tuple[str, int]]:
    """(reason, addresses) of the suppression list, by reason."""
    return [(r, n) for r, n in store.conn.execute("SELECT reason, count(*) FROM suppression GROUP BY reason ORDER BY reason")]


def iter_subscribers(store: Store, list_name: str | None = None, *, include_suppressed: bool = False) -> Iterator[SubscriberRow]:
    """Subscribers in address order, streamed."""
    concat = "group_concat" if store.dialect == SQLITE else "string_agg"  # SQLite has string_agg from 3.44 only
    q = ("SELECT s.email, s.name, s.locale, (SELECT " + concat + "(l.list, ';') FROM"
         " (SELECT list FROM subscriptions WHERE subscriber_id = s.id ORDER BY list) AS l) AS lists FROM subscribers s")
    where, args = [], []
    if list_name:
        where.append("EXISTS (SELECT 1 FROM subscriptions x WHERE x.subscriber_id = s.id AND x.list = ?)")
        args.append(list_name.lower())
    if not include_suppressed:
        where.append("NOT EXISTS (SELECT 1 FROM suppression p WHERE p.email = s.email)")
    if where:
        q += " WHERE " + " AND ".join(where)
    for r in store.conn.execute(q + " ORDER BY s.email", args):
        yield SubscriberRow(email=r["email"], name=r["name"], lists=tuple(split_lists(r["lists"] or "")), locale=r["locale"])


def names_of(store: Store, emails: list[str]) -> dict[str, str]:
    """The stored name of each of `emails` that is a subscriber."""
    marks = ",".join("?" * len(emails))
    return dict(store.conn.execute(f"SELECT email, name FROM subscribers WHERE email IN ({marks})", emails).fetchall())

