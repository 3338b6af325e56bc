"""The delivery ledger: one row per (edition, channel, target), planned -> sending -> sent | failed | unknown.

The rule that keeps mail and posts from going out twice: a row is moved to `sending` (and committed)
before the request leaves, and to `sent`/`failed` after the reply. A row found in `sending` by a later
run belongs to a process that died mid-request, so its outcome is unknown: it becomes `unknown` and is
reported, and only an explicit `--resend-unknown` puts it back to `planned`.

Several senders may share an edition (one machine or several on one PostgreSQL store). Each claims
rows under its own `holder` id and holds the lease "sender:<holder>" while it lives; only rows whose
holder is gone are settled by recovery, so one sender starting never touches another's rows in flight.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import Callable, Iterable, Sequence

from publisher.models import Delivery, State
from publisher.store.backend import SQLITE
from publisher.store.db import Store, from_iso, iso

Clock = Callable[[], datetime]
SENDER_LEASE = "sender:"  # + a holder id: held by a live sender for as long as it lives
UNKNOWN_REPLY = "process stopped while this was on the wire; outcome unknown"

_ANY = object()  # first_targets: any reply


def new_holder() -> str:
    """A sender's id: unique across processes and machines sharing one store."""
    return secrets.token_hex(8)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Ledger:
    """Ledger operations for one store. `clock` gives timestamps only; decisions take `now` as a value."""

    def __init__(self, store: Store, clock: Clock = _utcnow, holder: str | None = None):
        self.store = store
        self.db = store.conn
        self.clock = clock
        self.holder = holder  # the id this sender's claims carry (see hold())

    def hold(self, holder: str) -> "Ledger":
        """This ledger as a sender named `holder`, which takes its lease: recovery elsewhere leaves its rows alone."""
        self.store.acquire_lease(SENDER_LEASE + holder, self.clock())
        return Ledger(self.store, self.clock, holder)

    def let_go(self) -> None:
        if self.holder is not None:
            self.store.release_lease(SENDER_LEASE + self.holder)

    def _alive(self, holder: str | None) -> bool:
        if holder is None:  # claimed before senders had ids: no sender of that age can still be running
            return False
        return holder == self.holder or self.store.lease(SENDER_LEASE + holder) is not None

    def senders(self, edition_key: str, channel: str) -> list[tuple[str | None, int, bool]]:
        """Who holds rows in `sending`: (holder, rows, alive) per sender, most rows first."""
        found = self.db.execute("SELECT holder, count(*) FROM deliveries WHERE edition_key=? AND channel=? AND state='sending'"
                                " GROUP BY holder", (edition_key, channel)).fetchall()
        return sorted(((h, n, self._alive(h)) for h, n in found), key=lambda x: -x[1])

    def held_elsewhere(self, edition_key: str, channel: str) -> int:
        """Rows in `sending` under other senders that are alive (sharing the edition with --join)."""
        return sum(n for holder, n, alive in self.senders(edition_key, channel) if holder != self.holder and alive)

    def sender_name(self, holder: str | None) -> str | None:
        """Where a sender ran ("pid 4242 on host-a"), from its lease row, held or not; None if unknown."""
        row = self.store.last_holder(SENDER_LEASE + holder) if holder else None
        return row.holder if row else None

    def orphans(self, edition_key: str, channel: str) -> dict[str | None, list[str]]:
        """Rows left in `sending` by senders that are gone, by holder: {holder: [target, ...]}."""
        found: dict[str | None, list[str]] = {}
        for holder in (h for h, _, alive in self.senders(edition_key, channel) if not alive):
            found[holder] = [r[0] for r in self.db.execute(
                "SELECT target FROM deliveries WHERE edition_key=? AND channel=? AND state='sending'"
                " AND holder IS NOT DISTINCT FROM ? ORDER BY target", (edition_key, channel, holder))]
        return found

    def settle(self, edition_key: str, channel: str, holder: str | None,
               results: Sequence[tuple[str, State, str | None, str | None]], replan: Sequence[str] = ()) -> None:
        """A gone sender's rows: outcomes recorded (one attempt each), `replan` back to `planned`. Only rows
        still in `sending` under that holder change, so two senders recovering the same rows agree."""
        stamp = iso(self.clock())
        where = " WHERE edition_key=? AND channel=? AND target=? AND state='sending' AND holder IS NOT DISTINCT FROM ?"
        with self.store.transaction() as db:
            db.executemany("UPDATE deliveries SET state=?, remote_id=coalesce(?, remote_id), reply=?, updated_at=?,"
                           " attempts=attempts+1" + where,
                           [(st.value, rid, reply, stamp, edition_key, channel, t, holder) for t, st, rid, reply in results])
            db.executemany("UPDATE deliveries SET state='planned', updated_at=?" + where,
                           [(stamp, edition_key, channel, t, holder) for t in replan])

    def plan(self, edition_key: str, channel: str, targets: Iterable[str], batch: int = 5000) -> int:
        """Add `planned` rows for targets that have none; existing rows keep their state. Returns rows added."""
        added = 0
        stamp = iso(self.clock())
        chunk: list[tuple] = []

        def flush() -> None:
            nonlocal added
            with self.store.transaction() as db:
                # rowcount, not total_changes: the latter also counts the delivery_counts trigger's writes
                added += db.executemany("INSERT INTO deliveries (edition_key, channel, target, state, updated_at)"
                                        " VALUES (?,?,?,'planned',?) ON CONFLICT DO NOTHING", chunk).rowcount
            chunk.clear()

        for t in targets:
            chunk.append((edition_key, channel, t, stamp))
            if len(chunk) >= batch:
                flush()
        if chunk:
            flush()
        self.store.planned(added)
        return added

    def recover(self, edition_key: str, channel: str) -> list[str]:
        """Rows left in `sending` by a dead sender become `unknown` (a live one's stay); returns their targets."""
        orphans = self.orphans(edition_key, channel)
        stamp = iso(self.clock())
        with self.store.transaction() as db:
            for holder, targets in orphans.items():
                db.execute("UPDATE deliveries SET state='unknown', reply=coalesce(reply, '') || ?, updated_at=?"
                           " WHERE edition_key=? AND channel=? AND state='sending' AND holder IS NOT DISTINCT FROM ?",
                           (UNKNOWN_REPLY, stamp, edition_key, channel, holder))
        return sorted(t for targets in orphans.values() for t in targets)

    def recover_channel(self, channel: str) -> int:
        """Every row of `channel` (any edition) a dead sender left in `sending` becomes `unknown`; how many."""
        stamp, n = iso(self.clock()), 0
        found = self.db.execute("SELECT DISTINCT holder FROM deliveries WHERE state='sending' AND channel=?", (channel,))
        holders = [h for (h,) in found if not self._alive(h)]
        with self.store.transaction() as db:
            for holder in holders:
                n += db.execute("UPDATE deliveries SET state='unknown', reply=?, updated_at=? WHERE channel=?"
                                " AND state='sending' AND holder IS NOT DISTINCT FROM ?",
                                (UNKNOWN_REPLY, stamp, channel, holder)).rowcount
        return n

    def resend_unknown(self, edition_key: str, channel: str) -> int:
        """The user's explicit go-ahead: put `unknown` rows back to `planned`."""
        with self.store.transaction() as db:
            cur = db.execute("UPDATE deliveries SET state='planned', updated_at=? WHERE edition_key=? AND channel=?"
                             " AND state='unknown'", (iso(self.clock()), edition_key, channel))
            return cur.rowcount

    def claim_one(self, edition_key: str, channel: str, target: str) -> bool:
        """Move one specific row planned -> sending; False if it is in any other state."""
        with self.store.transaction() as db:
            cur = db.execute("UPDATE deliveries SET state='sending', attempts=attempts+1, updated_at=?, holder=?"
                             " WHERE edition_key=? AND channel=? AND target=? AND state='planned'",
                             (iso(self.clock()), self.holder, edition_key, channel, target))
            return cur.rowcount == 1

    def finish(self, edition_key: str, channel: str,
               results: Sequence[tuple[str, State, str | None, str | None]], *, count_attempt: bool = False) -> None:
        """Record outcomes: (target, state, remote_id, reply) for rows this process holds in `sending`.

        `count_attempt`: the relay answered for these targets, so each used up an attempt (email; a
        social post counts its attempt when it is claimed)."""
        stamp, bump = iso(self.clock()), int(count_attempt)
        with self.store.transaction() as db:
            for chunk in _chunks(results):
                # one statement for the batch: executemany steps (and hands the GIL over) once per row
                by_key, keys = self._by_key([t for t, _, _, _ in chunk])
                db.execute("UPDATE deliveries SET state=v.column2, remote_id=coalesce(v.column3, remote_id),"
                           " reply=v.column4, updated_at=?, attempts=attempts+? FROM (VALUES "
                           + ",".join(["(?,?,?,?)"] * len(chunk)) + ") AS v"
                           " WHERE edition_key=? AND channel=? AND target=v.column1" + by_key,
                           [stamp, bump, *(x for t, st, rid, reply in chunk for x in (t, st.value, rid, reply)),
                            edition_key, channel, *keys])

    def retry_later(self, edition_key: str, channel: str, targets: Sequence[tuple[str, datetime, str]], *,
                    count_attempt: bool = False) -> None:
        """Put rows back to `planned` with a not-before time (4xx, 429, connection dropped before acceptance).

        `count_attempt` only when the server answered for the target (a 4xx to RCPT): a refused connection
        or a 421 says nothing about the recipient and must not use up its attempts."""
        stamp, bump = iso(self.clock()), int(count_attempt)
        with self.store.transaction() as db:
            for chunk in _chunks(targets):
                by_key, keys = self._by_key([t for t, _, _ in chunk])
                db.execute("UPDATE deliveries SET state='planned', not_before=v.column2, reply=v.column3, updated_at=?,"
                           " attempts=attempts+? FROM (VALUES " + ",".join(["(?,?,?)"] * len(chunk)) + ") AS v"
                           " WHERE edition_key=? AND channel=? AND target=v.column1" + by_key,
                           [stamp, bump, *(x for t, when, reply in chunk for x in (t, iso(when), reply)), edition_key,
                            channel, *keys])

    def _by_key(self, targets: list[str]) -> tuple[str, tuple]:
        """PostgreSQL joins a VALUES list by reading the whole edition (its cost grows with the list); naming
        the targets as an array keeps it on the primary key. SQLite already walks the key."""
        return ("", ()) if self.store.dialect == SQLITE else (" AND target = ANY(?)", (targets,))

    def claim_range(self, edition_key: str, channel: str, limit: int, after: str, now: datetime) -> list[tuple[str, int]]:
        """The next due `planned` rows after `after` in target order, moved to `sending`: (target, attempts so far).

        Walking the primary key from a cursor keeps every claim cheap on a 100,000-row edition (`claim`
        sorts all planned rows each time). The unary + keeps SQLite on the primary key. Claiming counts
        no attempt: `finish`/`retry_later` count one when the relay answered for the target.
        """
        due, stamp = iso(now), iso(self.clock())
        with self.store.transaction() as db:
            if self.store.dialect == SQLITE:
                rows = db.execute(
                    "UPDATE deliveries SET state='sending', updated_at=?, holder=? WHERE edition_key=? AND channel=? AND target IN"
                    " (SELECT target FROM deliveries WHERE edition_key=? AND channel=? AND target > ? AND +state='planned'"
                    " AND (not_before IS NULL OR not_before <= ?) ORDER BY target LIMIT ?) RETURNING target, attempts",
                    (stamp, self.holder, edition_key, channel, edition_key, channel, after, due, limit)).fetchall()
            else:
                # Several senders: each locks the rows it picks and skips those another sender's open claim
                # holds. The pick is a MATERIALIZED CTE: as an IN (subquery) PostgreSQL may run it again
                # per outer row, and with SKIP LOCKED each run can pick other rows (more than `limit`).
                rows = db.execute(
                    "WITH picked AS MATERIALIZED (SELECT target FROM deliveries WHERE edition_key=?1 AND channel=?2"
                    " AND target > ?3 AND state='planned' AND (not_before IS NULL OR not_before <= ?4)"
                    " ORDER BY target LIMIT ?5 FOR UPDATE SKIP LOCKED)"
                    " UPDATE deliveries d SET state='sending', updated_at=?6, holder=?7"
                    " WHERE d.edition_key=?1 AND d.channel=?2 AND d.target = ANY(ARRAY(SELECT target FROM picked))"
                    " RETURNING d.target, d.attempts",
                    (edition_key, channel, after, due, limit, stamp, self.holder)).fetchall()
        return sorted((r[0], r[1]) for r in rows)

    def release(self, edition_key: str, channel: str, targets: Sequence[str]) -> None:
        """Rows claimed but never started (stop, login refused) go back to `planned`, no attempt counted."""
        with self.store.transaction() as db:
            db.executemany("UPDATE deliveries SET state='planned', updated_at=?"
                           " WHERE edition_key=? AND channel=? AND target=? AND state='sending'",
                           [(iso(self.clock()), edition_key, channel, t) for t in targets])

    def sending(self, edition_key: str, channel: str, holder: str | None | object = _ANY) -> list[str]:
        """Targets in `sending` (of one holder, if given)."""
        q, extra = "SELECT target FROM deliveries WHERE edition_key=? AND channel=? AND state='sending'", ()
        if holder is not _ANY:
            q, extra = q + " AND holder IS NOT DISTINCT FROM ?", (holder,)
        return [r[0] for r in self.db.execute(q + " ORDER BY target", (edition_key, channel, *extra))]

    def drop_suppressed(self, edition_key: str, channel: str) -> int:
        """Planned rows whose address was suppressed since planning are removed: nobody suppressed is mailed."""
        with self.store.transaction() as db:
            return db.execute("DELETE FROM deliveries WHERE edition_key=? AND channel=? AND state='planned'"
                              " AND target IN (SELECT email FROM suppression)", (edition_key, channel)).rowcount

    def get(self, edition_key: str, channel: str, target: str) -> Delivery | None:
        r = self.db.execute("SELECT * FROM deliveries WHERE edition_key=? AND channel=? AND target=?",
                            (edition_key, channel, target)).fetchone()
        return _delivery(r) if r else None

    def rows(self, edition_key: str, channel: str | None = None, state: State | None = None) -> list[Delivery]:
        q, args = "SELECT * FROM deliveries WHERE edition_key=?", [edition_key]
        if channel:
            q += " AND channel=?"
            args.append(channel)
        if state:
            q += " AND state=?"
            args.append(state.value)
        return [_delivery(r) for r in self.db.execute(q + " ORDER BY channel, target", args)]

    def counts(self, edition_key: str, channel: str | None = None) -> dict[str, int]:
        """Rows per state of one edition, on one channel or all, as the delivery_counts table keeps them."""
        out = {s.value: 0 for s in State}
        q, args = "SELECT state, n FROM delivery_counts WHERE edition_key=?", (edition_key,)
        if channel:
            q, args = q + " AND channel=?", (edition_key, channel)
        for state, n in self.db.execute(q, args):
            out[state] += n
        return out

    def failures(self, edition_key: str, channels: Sequence[str], limit: int,
                 targets: int) -> list[tuple[str | None, int, list[str]]]:
        """The `limit` most frequent failure replies over these channels, most rows first:
        (reply, rows, the first `targets` addresses). Read from the deliveries_failed index alone."""
        if not channels:
            return []
        one = "SELECT reply, count(*) AS n FROM deliveries WHERE edition_key=? AND channel=? AND state='failed' GROUP BY reply"
        rows = self.db.execute(f"SELECT reply, CAST(sum(n) AS BIGINT) FROM ({' UNION ALL '.join([one] * len(channels))}) AS f"
                               " GROUP BY reply ORDER BY 2 DESC, 1 NULLS FIRST LIMIT ?",
                               (*[a for ch in channels for a in (edition_key, ch)], limit)).fetchall()
        return [(reply, n, self.first_targets(edition_key, channels, State.FAILED, targets, reply=reply)) for reply, n in rows]

    def first_targets(self, edition_key: str, channels: Sequence[str], state: State, limit: int,
                      *, reply: str | None | object = _ANY) -> list[str]:
        """The first `limit` targets in address order of rows in `state` (and with this reply) over these channels."""
        q, extra = "SELECT target FROM deliveries WHERE edition_key=? AND channel=? AND state=?", ()
        if reply is not _ANY:
            q, extra = q + " AND reply IS NOT DISTINCT FROM ?", (reply,)
        found: list[str] = []
        for ch in channels:
            found += [r[0] for r in self.db.execute(q + " ORDER BY target LIMIT ?", (edition_key, ch, state.value, *extra, limit))]
        return sorted(found)[:limit]

    def not_before(self, edition_key: str, channel: str, target: str) -> datetime | None:
        """The earliest time one row may be tried again, if one was set (429 reset, spacing, daily cap)."""
        r = self.db.execute("SELECT not_before FROM deliveries WHERE edition_key=? AND channel=? AND target=?",
                            (edition_key, channel, target)).fetchone()
        return from_iso(r[0]) if r and r[0] else None

    # last_sent_at and sent_times read the deliveries_sent index (channel, 'sent', updated_at): a few steps
    # whatever the ledger's history, where the table itself holds millions of old email rows.

    def sent_times(self, channel: str, since: datetime) -> list[datetime]:
        """When rows of `channel` (any edition) were sent, at or after `since`, oldest first (daily caps)."""
        rows = self.db.execute("SELECT updated_at FROM deliveries WHERE channel=? AND state='sent' AND updated_at >= ?"
                               " ORDER BY updated_at", (channel, iso(since)))
        return [from_iso(r[0]) for r in rows]

    def last_sent_at(self, channel: str) -> datetime | None:
        """When `channel` (any edition) last had a row marked sent (spacing between posts of one account)."""
        r = self.db.execute("SELECT max(updated_at) FROM deliveries WHERE channel=? AND state='sent'", (channel,)).fetchone()
        return from_iso(r[0]) if r and r[0] else None

    def next_not_before(self, edition_key: str, channel: str) -> datetime | None:
        r = self.db.execute("SELECT min(not_before) FROM deliveries WHERE edition_key=? AND channel=? AND state='planned'",
                            (edition_key, channel)).fetchone()
        return from_iso(r[0]) if r and r[0] else None


def _chunks(rows: Sequence, size: int = 400) -> Iterable[Sequence]:
    """Slices small enough for SQLite's limit on bound parameters."""
    for i in range(0, len(rows), size):
        yield rows[i:i + size]


def _delivery(r) -> Delivery:
    return Delivery(edition_key=r["edition_key"], channel=r["channel"], target=r["target"], state=State(r["state"]),
                    remote_id=r["remote_id"], reply=r["reply"], attempts=r["attempts"],
                    updated_at=from_iso(r["updated_at"]) if r["updated_at"] else None)
