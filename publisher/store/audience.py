"""The audience beyond the subscriber rows: names for a batch of recipients, pending sign-ups (double opt-in), consent
records, per-list opt-outs, and what `subscribers show` and `subscribers forget` read and erase.

A sign-up is a row of `signups` until its confirmation link is followed: only then does the address
become a subscriber (or get the new lists), with a consent row holding the proof. Nothing here reads a
clock or a secret: times and keyed hashes come in as values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

from publisher.store.db import Store, iso
from publisher.store.subscribers import origin, split_lists

# A suppression that the reader's own confirmed sign-up lifts; the others (bounces, complaints, an
# operator's `remove`) stay whatever the form says.
LIFTED_BY_OPT_IN = ("unsubscribed",)
HASH_PREFIX = "hash:"


@dataclass(frozen=True)
class Signup:
    id: str
    email: str
    name: str
    lists: tuple[str, ...]
    locale: str
    form: str
    ip: str | None
    consent: str
    created_at: str
    expires_at: str
    confirmed_at: str | None


def is_subscriber(store: Store, email: str) -> bool:
    return store.conn.execute("SELECT 1 FROM subscribers WHERE email = ?", (email,)).fetchone() is not None


def _opt_out(db, email: str, lists: str, source: str, stamp: str) -> None:
    db.execute("INSERT INTO consents (email, kind, lists, source, recorded_at) VALUES (?, 'opt-out', ?, ?, ?)",
               (email, lists, source, stamp))


def leave_lists(store: Store, email: str, lists: Iterable[str], source: str, now: datetime) -> int:
    """Take the subscriber off `lists` (one campaign's list and series), recorded as an opt-out; rows removed."""
    names = sorted({n.lower() for n in lists})
    marks = ",".join("?" * len(names))
    with store.transaction() as db:
        cur = db.execute(f"DELETE FROM subscriptions WHERE list IN ({marks}) AND subscriber_id ="
                         " (SELECT id FROM subscribers WHERE email = ?)", (*names, email))
        if cur.rowcount:
            _opt_out(db, email, ";".join(names), source, iso(now))
        return cur.rowcount


def record_opt_out(store: Store, email: str, lists: str, source: str, now: datetime) -> None:
    """Note an opt-out (unsubscribe from all, preferences) in the consent record."""
    with store.transaction() as db:
        _opt_out(db, email, lists, source, iso(now))


def suppression_of(store: Store, email: str, hashed: str | None) -> str | None:
    """The suppression reason of an address, by itself or by its keyed hash (a forgotten address)."""
    r = store.conn.execute("SELECT reason FROM suppression WHERE email IN (?, ?) ORDER BY email = ? DESC LIMIT 1",
                           (email, HASH_PREFIX + (hashed or ""), email)).fetchone()
    return r[0] if r else None


def hashed_suppressions(store: Store) -> dict[str, str]:
    """keyed hash -> reason, for every forgotten address on the suppression list."""
    return {r[0][len(HASH_PREFIX):]: r[1] for r in store.conn.execute(
        "SELECT email, reason FROM suppression WHERE email LIKE 'hash:%'")}


def subscribed_lists(store: Store, email: str) -> set[str]:
    return {r[0] for r in store.conn.execute(
        "SELECT x.list FROM subscriptions x JOIN subscribers s ON s.id = x.subscriber_id WHERE s.email = ?", (email,))}


NOTICE_KINDS = ("confirm", "welcome")  # the edition keys of sign-up mails: "confirm/<sign-up id>", "welcome/<id>"


def notice_counts(store: Store, channels: Iterable[str]) -> dict[str, int]:
    """state -> rows of the sign-up mails (confirmation, welcome), every one ever sent.

    A range of edition keys per kind: the ledger index is walked over the notices only, never the editions."""
    out: dict[str, int] = {}
    for kind in NOTICE_KINDS:
        for channel in channels:
            for state, n in store.conn.execute(
                    "SELECT state, count(*) FROM deliveries WHERE edition_key >= ? AND edition_key < ? AND channel = ?"
                    " GROUP BY state", (f"{kind}/", f"{kind}0", channel)):
                out[state] = out.get(state, 0) + n
    return out


# -- sign-ups --------------------------------------------------------------------------------------


def add_signup(store: Store, s: Signup) -> None:
    with store.transaction() as db:
        db.execute("INSERT INTO signups (id, email, name, lists, locale, form, ip, consent, created_at, expires_at)"
                   " VALUES (?,?,?,?,?,?,?,?,?,?)", (s.id, s.email, s.name, ";".join(s.lists), s.locale, s.form, s.ip,
                                                     s.consent, s.created_at, s.expires_at))


def signup(store: Store, signup_id: str) -> Signup | None:
    r = store.conn.execute("SELECT * FROM signups WHERE id = ?", (signup_id,)).fetchone()
    if r is None:
        return None
    return Signup(r["id"], r["email"], r["name"], tuple(split_lists(r["lists"])), r["locale"], r["form"], r["ip"],
                  r["consent"], r["created_at"], r["expires_at"], r["confirmed_at"])


def signups_since(store: Store, email: str, since: datetime) -> int:
    """How many sign-ups (so confirmation mails) an address had since `since`: the daily cap."""
    return store.conn.execute("SELECT count(*) FROM signups WHERE email = ? AND created_at >= ?",
                              (email, iso(since))).fetchone()[0]


def confirm(store: Store, signup_id: str, now: datetime, ip: str | None, hashed: str | None) -> Signup | None:
    """Follow a confirmation link: the sign-up becomes a subscription with its consent row, once.

    None when the link is unknown, already used or expired (checked inside the transaction, so two
    clicks at once confirm once). A confirmed sign-up lifts an `unsubscribed` suppression, never a
    bounce, complaint or manual one."""
    stamp = iso(now)
    with store.transaction() as db:
        r = db.execute("SELECT * FROM signups WHERE id = ? AND confirmed_at IS NULL AND expires_at > ?",
                       (signup_id, stamp)).fetchone()
        if r is None:
            return None
        db.execute("UPDATE signups SET confirmed_at = ? WHERE id = ?", (stamp, signup_id))
        email = r["email"]
        marks = ",".join("?" * len(LIFTED_BY_OPT_IN))
        db.execute(f"DELETE FROM suppression WHERE email IN (?, ?) AND reason IN ({marks})",
                   (email, HASH_PREFIX + (hashed or ""), *LIFTED_BY_OPT_IN))
        db.execute("INSERT INTO subscribers (email, name, locale, created_at, updated_at) VALUES (?,?,?,?,?)"
                   " ON CONFLICT(email) DO UPDATE SET name = CASE WHEN excluded.name != '' THEN excluded.name ELSE subscribers.name END,"
                   " updated_at = excluded.updated_at", (email, r["name"], r["locale"], stamp, stamp))
        came = origin(db, f"form:{r['form']}", stamp)
        db.executemany("INSERT INTO subscriptions (subscriber_id, list, origin) SELECT id, ?, ? FROM subscribers"
                       " WHERE email = ? ON CONFLICT DO NOTHING", [(lst, came, email) for lst in split_lists(r["lists"])])
        db.execute("INSERT INTO consents (email, kind, lists, source, ip, consent, given_at, confirmed_at, confirm_ip, recorded_at)"
                   " VALUES (?, 'opt-in', ?, ?, ?, ?, ?, ?, ?, ?)",
                   (email, r["lists"], f"form:{r['form']}", r["ip"], r["consent"], r["created_at"], stamp, ip, stamp))
    return signup(store, signup_id)


# -- the reader's rights -----------------------------------------------------------------------------


def person(store: Store, email: str) -> dict:
    """Everything held about an address: subscriber row, lists, consent records, sign-ups, suppression, deliveries."""
    db = store.conn
    sub = db.execute("SELECT email, name, locale, created_at, updated_at FROM subscribers WHERE email = ?", (email,)).fetchone()
    return {
        "email": email,
        "subscriber": dict(sub) if sub else None,
        "lists": sorted(subscribed_lists(store, email)),
        "subscriptions": [dict(r) for r in db.execute(
            "SELECT x.list, o.source, o.at AS since FROM subscriptions x JOIN subscribers s ON s.id = x.subscriber_id"
            " LEFT JOIN origins o ON o.id = x.origin WHERE s.email = ? ORDER BY x.list", (email,))],
        "consents": [dict(r) for r in db.execute(
            "SELECT kind, lists, source, ip, consent, given_at, confirmed_at, confirm_ip, recorded_at FROM consents"
            " WHERE email = ? ORDER BY id", (email,))],
        "signups": [dict(r) for r in db.execute(
            "SELECT form, lists, ip, consent, created_at, expires_at, confirmed_at FROM signups WHERE email = ?"
            " ORDER BY created_at", (email,))],
        "suppression": [dict(r) for r in db.execute(
            "SELECT reason, detail, created_at FROM suppression WHERE email = ?", (email,))],
        "deliveries": [dict(r) for r in db.execute(
            "SELECT edition_key, channel, state, remote_id, reply, attempts, updated_at FROM deliveries WHERE target = ?"
            " ORDER BY updated_at, edition_key", (email,))],
    }


@dataclass(frozen=True)
class Forgotten:
    subscriber: bool
    consents: int
    signups: int
    deliveries: int
    suppressed: str | None  # the reason kept under the keyed hash


def delivery_editions(store: Store, email: str) -> list[str]:
    """The editions with a ledger row for this address: the sends `subscribers forget` must not run beside."""
    return [r[0] for r in store.conn.execute("SELECT DISTINCT edition_key FROM deliveries WHERE target = ?"
                                             " ORDER BY edition_key", (email,))]


def forget(store: Store, email: str, hashed: str) -> Forgotten:
    """Erase an address from every table; a suppression stays, under the keyed hash only.

    Ledger rows keep their counts and states with the hash as target, so an edition's report still adds
    up and nothing can be planned for the address again under its old row."""
    target = HASH_PREFIX + hashed
    with store.transaction() as db:
        sub = db.execute("DELETE FROM subscribers WHERE email = ?", (email,)).rowcount
        consents = db.execute("DELETE FROM consents WHERE email = ?", (email,)).rowcount
        signups = db.execute("DELETE FROM signups WHERE email = ?", (email,)).rowcount
        # a row already held by the hash (forgotten before, then back) keeps the first one; deleted, not
        # replaced by UPDATE OR REPLACE, so the delivery_counts triggers see it go
        deliveries = db.execute("DELETE FROM deliveries WHERE target = ?2 AND EXISTS (SELECT 1 FROM deliveries AS d"
                                " WHERE d.edition_key = deliveries.edition_key AND d.channel = deliveries.channel"
                                " AND d.target = ?1)", (target, email)).rowcount
        deliveries += db.execute("UPDATE deliveries SET target = ?1, reply = replace(reply, ?2, ?1) WHERE target = ?2",
                                 (target, email)).rowcount
        r = db.execute("SELECT reason, created_at FROM suppression WHERE email = ?", (email,)).fetchone()
        if r is not None:
            db.execute("DELETE FROM suppression WHERE email = ?", (email,))
            db.execute("INSERT INTO suppression (email, reason, detail, created_at) VALUES (?, ?, 'forgotten', ?) ON CONFLICT DO NOTHING",
                       (target, r[0], r[1]))
    return Forgotten(bool(sub), consents, signups, deliveries, r[0] if r else None)

