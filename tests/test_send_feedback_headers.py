"""What a live send puts on each copy for hearing back: the VERP return path, the mailto unsubscribe address
with its token, Feedback-ID, and a Date that is the moment the copy left (never --now)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

from publisher.feedback.tokens import find_tokens
from support.email_project import ENV, prepared, send_args
from support.smtp_servers import SmtpServer

TOKEN = r"[0-9a-z]+-[0-9a-z]+-[0-9a-f]{16}"


def _with_return_path(project) -> None:
    text = project.settings.read_text(encoding="utf-8")
    project.write_settings(text.replace('reply_to = ', 'return_path = "bounces@endurance-info.com"\nfeedback_id = "ei-news"\nreply_to = '))


def test_each_copy_names_its_recipient_in_its_return_path_and_mailto_address(project):
    with SmtpServer() as srv:
        addrs = prepared(project, srv.port, 3)
        _with_return_path(project)
        before = datetime.now(timezone.utc).replace(microsecond=0)
        proc = project.cli(*send_args(), env=ENV)  # --now is 2026-11-23 09:00 +01:00
        assert proc.returncode == 0, proc.stderr
    assert sorted(r.rcpt for r in srv.received) == addrs
    senders, mailtos = set(), set()
    for r in srv.received:
        msg = r.message()
        assert re.fullmatch(rf"bounces\+b{TOKEN}@endurance-info\.com", r.mail_from), r.mail_from
        mailto = re.search(r"<mailto:([^>]+)>", str(msg["List-Unsubscribe"])).group(1)
        assert re.fullmatch(rf"unsubscribe\+(u{TOKEN})@endurance-info\.com\?subject=unsubscribe%20\1", mailto), mailto
        senders.add(r.mail_from)
        mailtos.add(mailto)
        assert msg["Feedback-ID"] == "endurance:2026-W47:newsletter:ei-news"
        sent_at = parsedate_to_datetime(msg["Date"])
        assert before - timedelta(seconds=1) <= sent_at <= datetime.now(timezone.utc) + timedelta(seconds=1)
        # the tokens name the same edition and this recipient's subscriber row
        b, = find_tokens(r.mail_from)
        u, = find_tokens(mailto)
        assert (b.edition_number, b.subscriber_id) == (u.edition_number, u.subscriber_id)
    assert len(senders) == len(mailtos) == 3  # one per recipient


def test_a_live_test_copy_has_the_real_date_and_no_token(project):
    with SmtpServer() as srv:
        prepared(project, srv.port, 1)
        _with_return_path(project)
        before = datetime.now(timezone.utc).replace(microsecond=0)
        proc = project.cli(*send_args("--to", "seed@example.com"), env=ENV)
        assert proc.returncode == 0, proc.stderr
    r, = srv.received
    msg = r.message()
    assert parsedate_to_datetime(msg["Date"]) >= before - timedelta(seconds=1)
    assert "<mailto:unsubscribe@endurance-info.com?subject=unsubscribe>" in str(msg["List-Unsubscribe"])
    assert r.mail_from == "bounces@endurance-info.com"  # the return path, without a token: a proof names no subscriber
