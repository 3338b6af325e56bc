"""Verdicts and webhook events -> rows of the feedback table and the suppression list, for the right person.

A mail report acts only through a token that verifies (publisher/feedback/tokens.py, or a complaint's
signed https unsubscribe token): the token names the subscriber and the edition, the mac proves we
made it for them. A webhook's event is already authenticated (publisher/feedback/webhooks.py) and
names its recipient; its edition comes from our Message-ID when the provider echoes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from publisher.feedback.classify import Verdict
from publisher.feedback.tokens import TokenSigner
from publisher.store.db import Store
from publisher.store.feedback import Feedback, edition_of_number, email_of_subscriber
from publisher.web.tokens import Signer

_KIND = {"hard-bounce": "hard-bounce", "soft-bounce": "soft-bounce", "complaint": "complaint", "unsubscribe": "unsubscribed"}
# our Message-IDs: "<campaign>.<YYYY-Www>.<24 hex>@domain" (publisher/channels/email/message.py)
_MESSAGE_ID = re.compile(r"<?([A-Za-z0-9.-]+)\.(\d{4}-W\d\d)\.[0-9a-f]{24}@[^>\s]+>?")


@dataclass(frozen=True)
class Resolved:
    """A verdict's reports, and how many tokens did not verify (a forgery, or another store's mail)."""

    reports: list[Feedback]
    refused: int


def resolve(store: Store, verdict: Verdict, source: str, tokens: TokenSigner, web: Signer) -> Resolved:
    """The reports a verdict makes, one per verified token."""
    kind = _KIND.get(verdict.kind)
    if kind is None:
        return Resolved([], 0)
    reports: dict[tuple[str, str | None], Feedback] = {}
    refused = 0
    for t in verdict.tokens:
        edition = edition_of_number(store, t.edition_number)
        address = email_of_subscriber(store, t.subscriber_id)
        if edition is None or address is None or not tokens.verify(t, edition, address):
            refused += 1
            continue
        reports.setdefault((address, edition), Feedback(source, address, kind, edition, verdict.detail or None))
    if not reports:
        for t in verdict.web_tokens:  # a complaint quoting only the https unsubscribe link of its message
            address = web.verify(t)
            if address:
                reports.setdefault((address, None), Feedback(source, address, kind, None, verdict.detail or None))
    return Resolved(list(reports.values()), refused)


def edition_from_message_id(message_id: str | None) -> str | None:
    """The edition key inside one of our Message-IDs, or None."""
    m = _MESSAGE_ID.search(message_id or "")
    return f"{m.group(1)}/{m.group(2)}" if m else None

