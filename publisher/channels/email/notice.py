"""Notices: the one-off mails of the sign-up flow (confirmation, welcome), sent at once, through the ledger.

A notice is its own ledger channel ("notice", or "outbox:notice" when [publisher].delivery = "outbox"),
keyed "<kind>/<sign-up id>" with the address as target: it is planned and claimed (`sending`) before
it leaves, so it goes out at most once; a relay that gives no clear answer leaves it `unknown`, and a
process that dies mid-send leaves it `sending` until `recover_notices` marks it unknown. It goes over
the same SMTP path as the digest (`send_one`: [smtp] settings, TLS, login), or to the outbox as .eml.
"""

from __future__ import annotations

import logging
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path

from publisher.channels.email.proof import send_one
from publisher.channels.email.smtp import Reply, SmtpOutcome
from publisher.config import Settings
from publisher.errors import DeliveryError
from publisher.models import State
from publisher.store.ledger import Ledger
from publisher.text import one_line, slug

log = logging.getLogger("publisher")
_STATES = {SmtpOutcome.SENT: State.SENT, SmtpOutcome.FAILED: State.FAILED, SmtpOutcome.UNKNOWN: State.UNKNOWN}


def channel_of(settings: Settings) -> str:
    return "notice" if settings.publisher.delivery == "live" else "outbox:notice"


def claim(settings: Settings, ledger: Ledger, key: str, to: str) -> bool:
    """Plan the notice's row and take it (`sending`); False when it was already sent, tried or claimed."""
    ch = channel_of(settings)
    ledger.plan(key, ch, [to])
    return ledger.claim_one(key, ch, to)


def build(settings: Settings, to: str, subject: str, text: str, now: datetime) -> bytes:
    """The MIME bytes of a text notice from [email].from to `to`."""
    msg = EmailMessage()
    msg["From"] = settings.email.sender
    if settings.email.reply_to:
        msg["Reply-To"] = settings.email.reply_to
    msg["To"] = to
    msg["Subject"] = one_line(subject)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid(domain=parseaddr(settings.email.sender)[1].rpartition("@")[2] or "localhost")
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to a confirmation
    msg.set_content(text, cte="quoted-printable")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def deliver(settings: Settings, key: str, to: str, data: bytes) -> tuple[State, str | None, str]:
    """Send (or write to the outbox) a claimed notice: (state, message id, reply) for `finish`. Blocks."""
    mid = _message_id(data)
    if settings.publisher.delivery != "live":
        folder = settings.path(settings.publisher.outbox) / "notices" / slug(key)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{slug(to)}.eml"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        return State.SENT, mid, f"written to {path}"
    try:
        reply: Reply = send_one(settings.smtp, parseaddr(settings.email.sender)[1], to, data)
    except DeliveryError as exc:  # the relay refused us (login, sender): nothing went out
        log.warning("notice %s: not sent: %s", key, exc)
        return State.FAILED, None, str(exc)
    state = _STATES.get(reply.outcome, State.FAILED)  # a 4xx: one try only, the reader can ask again
    if state is not State.SENT:
        log.warning("notice %s: %s: %s", key, state.value, reply.line())
    return state, mid, reply.line()


def finish(settings: Settings, ledger: Ledger, key: str, to: str, outcome: tuple[State, str | None, str]) -> None:
    state, mid, reply = outcome
    ledger.finish(key, channel_of(settings), [(to, state, mid, reply)], count_attempt=True)


def recover_notices(settings: Settings, ledger: Ledger) -> int:
    """Notices a dead process left in `sending` become `unknown` (never resent by themselves)."""
    return ledger.recover_channel(channel_of(settings))


def outbox_folder(settings: Settings) -> Path:
    return settings.path(settings.publisher.outbox) / "notices"


def _message_id(data: bytes) -> str | None:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().strip(b"<>").decode("ascii", "replace")
    return None


def ask_editors(settings: Settings, ledger: Ledger, key: str, editors: list[str], subject: str, text: str,
                now: datetime) -> list[str]:
    """Tell each editor once (a ledger row per editor under "approval/<edition key>") that an edition waits
    for approval; one line per mail that went out or failed now."""
    lines = []
    for email in editors:
        if not claim(settings, ledger, key, email):
            continue  # told already (or being told): never twice
        outcome = deliver(settings, key, email, build(settings, email, subject, text, now))
        finish(settings, ledger, key, email, outcome)
        lines.append(f"{key}: approval request to {email}: {outcome[0].value} ({one_line(outcome[2])[:120]})")
    return lines
