"""Proofs: `publisher send --to ADDRESS` sends [TEST] copies of an edition to seed addresses.

A proof has no subscriber row and no ledger row: it goes over its own connection (one message, one try)
and its outcome is printed, not recorded.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime

from publisher.channels import system_now
from publisher.channels.email.channel import PreparedEdition
from publisher.channels.email.dkim import load as load_dkim
from publisher.channels.email.message import build
from publisher.channels.email.pool import MAX_DEFERS, Job, Pool, Result
from publisher.channels.email.security import password_for
from publisher.channels.email.smtp import Reply, SmtpOutcome
from publisher.config import Campaign, Settings, SmtpSettings
from publisher.models import RenderedEdition
from publisher.text import slug
from publisher.subscribers import normalise_address
from publisher.web.tokens import signer_from_env


def send_test(settings: Settings, campaign: Campaign, rendered: RenderedEdition, addresses: list[str], *,
              now: datetime) -> list[tuple[bool, str]]:
    """`publisher send --to ADDRESS`: [TEST] copies to seed addresses, without subscribers or ledger rows.

    One (done, line) per address: done is False when the copy was not sent or the address is bad."""
    live = settings.publisher.delivery == "live"
    # a live copy looks like the real thing: Date when it leaves, Feedback-ID, DKIM; no tokens (nobody to name)
    ed = PreparedEdition(rendered.edition.key, build(rendered, campaign, settings, now, subject_prefix="[TEST] ", live=live),
                         signer_from_env(required=False), settings, campaign.list.lower(),
                         dkim=load_dkim(settings.email) if live else None,
                         wall_clock=system_now if live else None)
    lines = []
    for text in addresses:
        try:
            email = normalise_address(text)
        except ValueError as exc:
            lines.append((False, f"test copy: {exc}"))
            continue
        data, mid = ed.message(email, "", message_id=ed.template.message_id(f"test.{now.timestamp()}.{email}"))
        if live:
            reply = send_one(settings.smtp, ed.return_path(email, None), email, data)
            verdict = "sent" if reply.outcome is SmtpOutcome.SENT else f"NOT sent ({reply.outcome.value})"
            lines.append((reply.outcome is SmtpOutcome.SENT, f"test copy of {ed.key} to {email}: {verdict}: {reply.line()}"))
        else:
            folder = settings.path(settings.publisher.outbox) / rendered.edition.campaign / rendered.edition.id / "email-test"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{slug(email)}.eml"
            path.write_bytes(data)
            lines.append((True, f"test copy of {ed.key} to {email}: written to {path} (delivery = \"outbox\")"))
    return lines


class _NoJournal:
    """Test copies keep no journal: they have no ledger row to settle."""

    def wire_line(self, target: str) -> bytes:
        return b""

    def result_line(self, target: str, outcome: str, remote_id: str | None, reply: str) -> bytes:
        return b""

    def write(self, lines: bytes) -> None:
        pass


def send_one(settings: SmtpSettings, sender: str, rcpt: str, data: bytes) -> Reply:
    """One message on its own connection (test copies); DeliveryError for what the settings must fix."""
    pool = Pool(settings, password_for(settings), sender, lambda job: (data, ""), stop=threading.Event(),
                journal=_NoJournal(), connections=1)
    pool.submit([Job(rcpt, "", 0, defers=MAX_DEFERS - 1)])  # one try: a deferral comes straight back
    end = time.monotonic() + settings.timeout * 4
    results: list[Result] = []
    while not results and pool.fatal is None and time.monotonic() < end:
        results += pool.step(0.1)
        if not results and pool.ready == 0 and pool.failed_opens:
            pool.give_up()
            break
    pool.close()
    if pool.fatal is not None:
        raise pool.fatal
    if results:
        return results[0][1]
    return Reply(SmtpOutcome.DEFER, None, pool.last_trouble or f"no answer from {settings.host}:{settings.port}")
