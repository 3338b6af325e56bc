"""What the mail system told us after a send: bounces, complaints and unsubscribes, per edition and address.

Every report (a DSN, an ARF report, a mail to the unsubscribe address, an ESP webhook) becomes one row of
`feedback`, keyed by where it came from (`source`: a Message-ID, a webhook event id), so reading the same
report twice counts it once. A hard bounce, a complaint or an unsubscribe puts the address on the
suppression list at once; soft bounces do after `soft_limit` of them in distinct editions.

The tables are in publisher/store/tables.py (FEEDBACK_SCHEMA). `return_paths` numbers the editions, so a VERP return path carries a short number instead of the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from publisher.store.db import Store, iso


KINDS = ("hard-bounce", "soft-bounce", "complaint", "unsubscribed")
# what each kind puts on the suppression list (soft bounces only past the limit)
_SUPPRESSES = {"hard-bounce": "hard-bounce", "complaint": "complaint", "unsubscribed": "unsubscribed"}


@dataclass(frozen=True)
class Feedback:
    """One report about one address."""

    source: str
    email: str
    kind: str
    edition_key: str | None = None
    detail: str | None = None


def edition_number(store: Store, edition_key: str) -> int:
    """The short number of an edition in return paths (made on first use)."""
    with store.transaction() as db:
        db.execute("INSERT INTO return_paths (edition_key) VALUES (?) ON CONFLICT DO NOTHING", (edition_key,))
        return db.execute("SELECT id FROM return_paths WHERE edition_key=?", (edition_key,)).fetchone()[0]


def edition_of_number(store: Store, number: int) -> str | None:
    row = store.conn.execute("SELECT edition_key FROM return_paths WHERE id=?", (number,)).fetchone()
    return row[0] if row else None


def subscriber_ids(store: Store, emails: list[str]) -> dict[str, int]:
    """The subscriber id of each of `emails` that is a subscriber (return paths carry it)."""
    marks = ",".join("?" * len(emails))
    return dict(store.conn.execute(f"SELECT email, id FROM subscribers WHERE email IN ({marks})", emails).fetchall())


def email_of_subscriber(store: Store, subscriber_id: int) -> str | None:
    row = store.conn.execute("SELECT email FROM subscribers WHERE id=?", (subscriber_id,)).fetchone()
    return row[0] if row else None


def record(store: Store, reports: list[Feedback], now: datetime, soft_limit: int) -> list[tuple[str, str]]:
    """Store reports (a report seen before is ignored) and suppress who they call for; returns (email, reason) suppressed now."""
    suppressed: list[tuple[str, str]] = []
    stamp = iso(now)
    with store.transaction() as db:
        for r in reports:
            if r.kind not in KINDS:
                raise ValueError(r.kind)
            cur = db.execute("INSERT INTO feedback (source, email, edition_key, kind, detail, created_at)"
                             " VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING", (r.source, r.email, r.edition_key, r.kind, r.detail, stamp))
            if cur.rowcount != 1:
                continue  # the same report, read again
            reason = _SUPPRESSES.get(r.kind)
            if reason is None:
                editions = db.execute("SELECT count(DISTINCT coalesce(edition_key, source)) FROM feedback"
                                      " WHERE email=? AND kind='soft-bounce'", (r.email,)).fetchone()[0]
                if editions < soft_limit:
                    continue
                reason = "hard-bounce"
                detail = f"{editions} soft bounces; last: {r.detail or ''}".strip()
            else:
                detail = r.detail
            cur = db.execute("INSERT INTO suppression (email, reason, detail, created_at) VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
                             (r.email, reason, detail, stamp))
            if cur.rowcount == 1:
                suppressed.append((r.email, reason))
    return suppressed


def counts_for_edition(store: Store, edition_key: str) -> dict[str, int]:
    """Addresses per kind of report for one edition."""
    out = dict.fromkeys(KINDS, 0)
    for kind, n in store.conn.execute("SELECT kind, count(DISTINCT email) FROM feedback WHERE edition_key=? GROUP BY kind",
                                      (edition_key,)):
        out[kind] = n
    return out
