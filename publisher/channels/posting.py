"""What a social network module implements, and the values it trades with the loop in social.py.

A network performs one create and says what happened (`PostOutcome`); `Plain` gives the defaults (no
login, nothing read back, an unknown post never retried blindly) and `ReadBack` the retry rule of a
network whose account can be read back completely. `PostKey` names a post the same way in every run
(idempotency keys, Bluesky record keys); `Thread` is where the next reply hangs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal, Protocol

from publisher.models import Delivery, Post

if TYPE_CHECKING:
    from publisher.config import Campaign

Kind = Literal["sent", "failed", "unknown", "rate_limited", "retry"]


@dataclass(frozen=True)
class PostOutcome:
    """What one create call did. `retry`: safe to repeat now (it did not take effect, or repeating it
    cannot duplicate); `maybe_taken` says whether, once retries run out, the row is `unknown`."""

    kind: Kind
    remote_id: str | None = None
    reply: str = ""
    retry_at: datetime | None = None  # rate_limited: the reset the server announced
    maybe_taken: bool = False
    found: bool = False  # sent: the network already had this post (a repeat it recognised, or a read-back)


@dataclass(frozen=True)
class Thread:
    """Where a reply hangs: the first post of the thread and the last one sent (remote ids)."""

    root: str | None = None
    parent: str | None = None

    def after(self, remote_id: str | None) -> "Thread":
        if not remote_id:  # sent but id unknown (X duplicate): later replies hang on the last known post
            return self
        return Thread(root=self.root or remote_id, parent=remote_id)


@dataclass(frozen=True)
class PostKey:
    """The identity of one post delivery; idempotency keys and record keys derive from it."""

    edition_key: str
    network: str
    target: str  # "post:N"
    slot: datetime  # the edition's slot, for time-shaped keys (Bluesky TIDs)

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"{self.edition_key}\x1f{self.network}\x1f{self.target}".encode()).hexdigest()


class Network(Protocol):
    """One social network as the loop sees it."""

    channel: str  # the ledger's channel name: "x", or "outbox:x"
    network: str  # which rendered posts it sends: "x"
    paced: bool  # whether spacing and the daily cap apply
    max_wait: timedelta  # the longest wait (429, spacing) inside one run
    min_interval: timedelta  # the network's own pacing between two posts of one account (0: none)
    daily_limit: int  # the network's own cap of posts per 24 hours (0: none)

    def prepare(self, campaign: "Campaign") -> None:
        """Log in, read the instance's limits...; raise DeliveryError with a one-line reason."""

    def create(self, post: Post, reply_to: Thread | None, key: PostKey) -> PostOutcome:
        """Make one post; never raises for a network failure, says what happened instead."""

    def retry_unknown(self, row: Delivery, now: datetime) -> bool:
        """May this `unknown` row be sent again without the user's --resend-unknown (once `find` found nothing)?"""

    def find(self, post: Post, key: PostKey) -> PostOutcome | None:
        """After an unclear outcome: the post as the network already has it (`sent`, found=True), or None."""


class Plain:
    """Defaults for a Network: no pacing of its own, no read-back, no safe retry of an unknown post."""

    paced = True
    min_interval = timedelta(0)
    daily_limit = 0

    def prepare(self, campaign: "Campaign") -> None:
        return None

    def retry_unknown(self, row: Delivery, now: datetime) -> bool:
        return False

    def find(self, post: Post, key: PostKey) -> PostOutcome | None:
        return None


def target(post: Post) -> str:
    return f"post:{post.position}"


def position(target: str) -> int:
    """The thread position in a target ("post:3" -> 3)."""
    return int(target.partition(":")[2] or 0)


class ReadBack(Plain):
    """A network whose account can be read back: after an unclear outcome, a post found there is
    `sent` (reported as found), and one that a complete read-back did not find may be sent again
    without --resend-unknown. `lookup` returns (found or None, whether every list was read)."""

    def __init__(self) -> None:
        self._absent: set[tuple[str, str]] = set()

    def lookup(self, post: Post, key: PostKey) -> tuple[PostOutcome | None, bool]:
        raise NotImplementedError

    def find(self, post: Post, key: PostKey) -> PostOutcome | None:
        found, complete = self.lookup(post, key)
        if found is None and complete:
            self._absent.add((key.edition_key, key.target))
        return found

    def retry_unknown(self, row: Delivery, now: datetime) -> bool:
        return (row.edition_key, row.target) in self._absent

