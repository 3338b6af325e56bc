"""The newsroom's rows (issue 12): admin users, their sessions, and the approve/hold/release record of editions.

A session is kept as the SHA-256 of its cookie value (a copied store opens no session), with its own CSRF
token. A user is locked out for a while after repeated failed logins; a success clears the count.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from publisher.store.db import Store
from publisher.store.isotime import from_iso, iso

ROLES = ("viewer", "editor")
ACTIONS = ("approve", "hold", "release")



@dataclass(frozen=True)
class User:
    email: str
    role: str
    password: str
    failures: int
    locked_until: datetime | None


@dataclass(frozen=True)
class Session:
    email: str
    role: str
    csrf: str
    expires_at: datetime


@dataclass(frozen=True)
class Decision:
    """One approve, hold or release of an edition: who and when."""

    campaign: str
    edition_id: str
    action: str
    who: str
    at: datetime


@dataclass(frozen=True)
class Gate:
    """An edition's approval state from its decisions: approved (ever), held (the last hold not released)."""

    approved: bool = False
    held: bool = False
    decisions: tuple[Decision, ...] = ()

    @property
    def last(self) -> Decision | None:
        return self.decisions[-1] if self.decisions else None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


# -- users -------------------------------------------------------------------------------------------


def add_user(store: Store, email: str, role: str, password_hash: str, now: datetime) -> bool:
    """Add a user, or replace the role and password of an existing one (their sessions end); True when new."""
    with store.transaction() as db:
        new = db.execute("SELECT 1 FROM users WHERE email=?", (email,)).fetchone() is None
        db.execute("INSERT INTO users (email, role, password, created_at) VALUES (?,?,?,?) ON CONFLICT(email) DO UPDATE"
                   " SET role=excluded.role, password=excluded.password, failures=0, locked_until=NULL",
                   (email, role, password_hash, iso(now)))
        db.execute("DELETE FROM sessions WHERE email=?", (email,))
    return new


def remove_user(store: Store, email: str) -> bool:
    with store.transaction() as db:
        db.execute("DELETE FROM sessions WHERE email=?", (email,))
        return db.execute("DELETE FROM users WHERE email=?", (email,)).rowcount == 1


def users(store: Store) -> list[User]:
    return [_user(r) for r in store.conn.execute("SELECT * FROM users ORDER BY email")]


def user(store: Store, email: str) -> User | None:
    row = store.conn.execute("SELECT * FROM users WHERE email=?", (email,)).fetchone()
    return _user(row) if row else None


def editors(store: Store) -> list[str]:
    return [u.email for u in users(store) if u.role == "editor"]


def login_failed(store: Store, email: str, now: datetime, limit: int, lockout: timedelta) -> None:
    """Count a failed login; the `limit`-th in a row locks the user out until now + lockout."""
    with store.transaction() as db:
        db.execute("UPDATE users SET failures = failures + 1 WHERE email=?", (email,))
        db.execute("UPDATE users SET locked_until=?, failures=0 WHERE email=? AND failures >= ?",
                   (iso(now + lockout), email, limit))


def login_succeeded(store: Store, email: str, token: str, csrf: str, now: datetime, lifetime: timedelta,
                    password_hash: str | None = None) -> None:
    """Clear the failures and open a session (its cookie value is `token`); a rehashed password is stored."""
    with store.transaction() as db:
        db.execute("UPDATE users SET failures=0, locked_until=NULL WHERE email=?", (email,))
        if password_hash:
            db.execute("UPDATE users SET password=? WHERE email=?", (password_hash, email))
        db.execute("DELETE FROM sessions WHERE expires_at <= ?", (iso(now),))
        db.execute("INSERT INTO sessions (id, email, csrf, created_at, expires_at) VALUES (?,?,?,?,?)",
                   (_hash(token), email, csrf, iso(now), iso(now + lifetime)))


def session(store: Store, token: str, now: datetime) -> Session | None:
    """The live session of a cookie value, with its user's current role; None when unknown or expired."""
    row = store.conn.execute("SELECT s.email, u.role, s.csrf, s.expires_at FROM sessions s JOIN users u USING (email)"
                             " WHERE s.id=? AND s.expires_at > ?", (_hash(token), iso(now))).fetchone()
    return Session(row["email"], row["role"], row["csrf"], from_iso(row["expires_at"])) if row else None


def end_session(store: Store, token: str) -> None:
    with store.transaction() as db:
        db.execute("DELETE FROM sessions WHERE id=?", (_hash(token),))


# -- approvals ---------------------------------------------------------------------------------------


def record_decision(store: Store, campaign: str, edition_id: str, action: str, who: str, now: datetime) -> None:
    with store.transaction() as db:
        db.execute("INSERT INTO approvals (campaign, edition_id, action, who, at) VALUES (?,?,?,?,?)",
                   (campaign, edition_id, action, who, iso(now)))


def gate(store: Store, campaign: str, edition_id: str) -> Gate:
    """The approval state of one edition."""
    found = tuple(Decision(r["campaign"], r["edition_id"], r["action"], r["who"], from_iso(r["at"])) for r in store.conn.execute(
        "SELECT * FROM approvals WHERE campaign=? AND edition_id=? ORDER BY id", (campaign, edition_id)))
    approved = any(d.action == "approve" for d in found)
    holds = [d.action for d in found if d.action in ("hold", "release")]
    return Gate(approved, bool(holds) and holds[-1] == "hold", found)


def _user(r) -> User:
    return User(r["email"], r["role"], r["password"], r["failures"], from_iso(r["locked_until"]) if r["locked_until"] else None)


def recent_decisions(store: Store, campaign: str, limit: int = 5) -> list[Decision]:
    """The last approve/hold/release decisions on a campaign's editions, oldest first."""
    rows = store.conn.execute("SELECT * FROM approvals WHERE campaign=? ORDER BY id DESC LIMIT ?", (campaign, limit)).fetchall()
    return [Decision(r["campaign"], r["edition_id"], r["action"], r["who"], from_iso(r["at"])) for r in reversed(rows)]
