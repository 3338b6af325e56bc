"""What one incoming message is: a bounce (hard or soft), a delay warning, a complaint, an unsubscribe, an auto-reply.

The order of the checks matters. A DSN (RFC 3464) or an ARF report (RFC 5965) is recognised by its
report type first: Postfix's DSNs carry `Auto-Submitted: auto-replied`, and must not be taken for a
vacation notice. A DSN's own status decides hard or soft (5.x.x hard, except "mailbox full" 5.2.2;
4.x.x soft; "delayed" is only a warning). The non-standard formats of other MTAs (Exim, qmail,
Exchange, Yahoo, ...) go to flufl.bounce, Mailman's detectors: a permanent failure is hard, a
temporary one a warning; mail to the unsubscribe address is recognised before them (a person's words
may look like a bounce to their heuristics). Then auto-replies (RFC 3834
`Auto-Submitted`, and the vacation headers and subjects in use), then: unknown.

Who a report is about comes from our signed tokens (publisher/feedback/tokens.py), never from the
addresses a report names: those are kept only for the detail line.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import re
from dataclasses import dataclass
from email.message import Message

from flufl.bounce import all_failures

from publisher.feedback.tokens import Token, find_tokens

# headers where a delivery agent or the sender records the address the message came to
_RECIPIENT_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "X-Original-Recipient", "To", "Cc")
_WEB_TOKEN = re.compile(r"[?&]t=([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)")
_AUTO_SUBJECT = re.compile(r"^\s*(auto(matic)?[ -]?(reply|response)|out of (the )?office|absent|absence|"
                           r"r[ée]ponse automatique|abwesenheit|vacation|away from)", re.I)
_MAILBOX_FULL = {"5.2.2", "4.2.2"}


@dataclass(frozen=True)
class Verdict:
    """What a message is, and the tokens that say who it is about."""

    kind: str  # hard-bounce | soft-bounce | delay | complaint | unsubscribe | auto-reply | unknown
    tokens: tuple[Token, ...] = ()
    web_tokens: tuple[str, ...] = ()  # signed https unsubscribe tokens found in a complaint's original message
    detail: str = ""
    addresses: tuple[str, ...] = ()  # the failing addresses the report itself names (for the detail only)

    @property
    def acts(self) -> bool:
        return self.kind in ("hard-bounce", "soft-bounce", "complaint", "unsubscribe")


def parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def classify(raw: bytes) -> Verdict:
    """The verdict on one raw message."""
    msg = parse(raw)
    text = raw.decode("utf-8", "replace")
    to_headers = " ".join(str(v) for h in _RECIPIENT_HEADERS for v in (msg.get_all(h) or []))
    report = (msg.get_param("report-type") or "").lower() if msg.get_content_type() == "multipart/report" else ""
    if report == "feedback-report" or _has_part(msg, "message/feedback-report"):
        return Verdict("complaint", tuple(find_tokens(text)), tuple(dict.fromkeys(_WEB_TOKEN.findall(text))),
                       _arf_detail(msg))
    bounce_tokens = tuple(find_tokens(to_headers, "b") or find_tokens(text, "b"))
    if report == "delivery-status" or _has_part(msg, "message/delivery-status"):
        kind, detail, addresses = _dsn(msg)
        if kind:
            return Verdict(kind, bounce_tokens, detail=detail, addresses=addresses)
    # before the heuristic detectors: a person's own words may look like a bounce to them
    unsubscribe = find_tokens(to_headers + " " + str(msg.get("Subject", "")), "u")
    if unsubscribe and not _auto_reply(msg):
        return Verdict("unsubscribe", tuple(unsubscribe), detail=f"mail to the unsubscribe address ({_subject(msg)})")
    temporary, permanent = all_failures(msg)
    if permanent:
        addresses = tuple(sorted(a.decode("ascii", "replace") for a in permanent))
        return Verdict("hard-bounce", bounce_tokens, detail=f"undeliverable ({_subject(msg)})", addresses=addresses)
    if temporary:
        return Verdict("delay", bounce_tokens, detail=_subject(msg))
    if _auto_reply(msg):
        return Verdict("auto-reply", bounce_tokens, detail=_subject(msg))
    return Verdict("unknown", detail=_subject(msg))


def _has_part(msg: Message, content_type: str) -> bool:
    return any(p.get_content_type() == content_type for p in msg.walk())


def _dsn(msg: Message) -> tuple[str | None, str, tuple[str, ...]]:
    """The worst outcome among a DSN's recipients: (kind, detail, addresses), kind None if none is stated."""
    outcomes: list[tuple[int, str, str, str]] = []  # (rank, kind, detail, address)
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status" or not part.is_multipart():
            continue
        for block in part.get_payload():
            action = str(block.get("Action", "")).strip().lower()
            if not action:
                continue
            status = str(block.get("Status", "")).strip().split(" ")[0]
            diagnostic = " ".join(str(block.get("Diagnostic-Code", "")).split())
            address = str(block.get("Original-Recipient") or block.get("Final-Recipient") or "").rpartition(";")[2].strip()
            detail = " ".join(p for p in (status, diagnostic) if p)
            if action == "failed":
                hard = status.startswith("5") and status not in _MAILBOX_FULL
                outcomes.append((2, "hard-bounce", detail, address) if hard else (1, "soft-bounce", detail, address))
            elif action == "delayed":
                outcomes.append((0, "delay", detail, address))
    if not outcomes:
        return None, "", ()
    rank, kind, detail, _ = max(outcomes)
    return kind, detail[:300], tuple(sorted({o[3] for o in outcomes if o[0] == rank and o[3]}))


def _arf_detail(msg: Message) -> str:
    for part in msg.walk():
        if part.get_content_type() == "message/feedback-report":
            payload = part.get_payload()
            block = payload[0] if isinstance(payload, list) and payload else None
            if block is not None:
                kind = str(block.get("Feedback-Type", "abuse")).strip()
                agent = str(block.get("User-Agent", "")).strip()
                return f"{kind} report" + (f" from {agent}" if agent else "")
    return "feedback report"


def _auto_reply(msg: Message) -> bool:
    auto = str(msg.get("Auto-Submitted", "")).strip().lower()
    if auto and auto != "no":
        return True
    if any(msg.get(h) for h in ("X-Autoreply", "X-Autorespond", "X-Vacation")):
        return True
    if str(msg.get("Precedence", "")).strip().lower() in ("auto_reply", "bulk", "junk"):
        return True
    return bool(_AUTO_SUBJECT.search(_subject(msg)))


def _subject(msg: Message) -> str:
    value = str(email.header.make_header(email.header.decode_header(str(msg.get("Subject", "")))))
    return " ".join(value.split())[:200]
