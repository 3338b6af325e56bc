"""The issue's acceptance test: a live send to a real Postfix that bounces some recipients, then `publisher bounces`.

Postfix (relaying nowhere) accepts every recipient, then returns real DSNs to each copy's VERP return
path in a Maildir that a real Dovecot serves over IMAPS. Into the same mailbox come an ARF complaint
quoting a delivered copy, a mailto unsubscribe with a forged From, a bounce with a forged token, a
vacation notice and a stray human mail. After `publisher bounces`, exactly the right people are
suppressed, `publisher status` counts them per edition, and what was not understood is still in INBOX.
"""

from __future__ import annotations

import email
import email.policy
import re
import smtplib
import sqlite3
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

import pytest

from support.email_project import ENV, EDITION, configure_live, send_args, store_path, suppressed
from support.mail_system import PASSWORD, MailSystem, available

pytestmark = [pytest.mark.slow, pytest.mark.skipif(available() is not None, reason=str(available()))]

DEAD = ["dead1@dead.test", "dead2@dead.test", "ghost@live.test"]  # unknown users: hard bounces
FULL = "full@full.test"  # deferred then returned with 4.2.2: a soft bounce
LIVE = ["reader@live.test", "fan@live.test", "critic@live.test"]


@pytest.fixture
def mail():
    system = MailSystem()
    yield system
    system.stop()


def _configure(project, mail: MailSystem) -> None:
    configure_live(project, mail.smtp_port)
    text = project.settings.read_text(encoding="utf-8")
    text = text.replace('unsubscribe_mailto = "unsubscribe@endurance-info.com"',
                        'unsubscribe_mailto = "unsubscribe@bounce.test"\nreturn_path = "bounces@bounce.test"')
    text += (f'\n[bounces]\nhost = "127.0.0.1"\nport = {mail.imaps_port}\nsecurity = "tls"\nusername = "{mail.login}"\n'
             f'ca_file = "{mail.certs.ca}"\n')
    project.write_settings(text)
    csv = project.root / "subs.csv"
    csv.write_text("email,name,series\n" + "".join(f"{a},{a.split('@')[0].title()},wec\n" for a in [*DEAD, FULL, *LIVE]),
                   encoding="utf-8")
    project.cli("fetch", check=True)
    project.cli("subscribers", "import", str(csv), check=True)


def _submit(mail: MailSystem, sender: str, rcpt: str, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", mail.smtp_port, timeout=30) as s:
        s.sendmail(sender, [rcpt], raw)


def _received(mail: MailSystem, address: str) -> email.message.EmailMessage:
    path, = mail.wait_messages(address, 1)
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def _arf(original: bytes) -> bytes:
    """An RFC 5965 abuse report quoting the copy a reader got, as a mailbox provider's feedback loop sends it."""
    return (b"From: Feedback Loop <fbl@live.test>\r\nTo: bounces@bounce.test\r\nSubject: Abuse report\r\n"
            b"Message-ID: <arf-1@live.test>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/report; report-type=feedback-report; boundary="arf"\r\n\r\n'
            b"--arf\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n"
            b"--arf\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: LiveFBL/1.0\r\n"
            b"Version: 1\r\n\r\n--arf\r\nContent-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n"
            + original.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + b"\r\n--arf--\r\n")


def test_live_send_bounces_complaint_and_mailto_unsubscribe_act_on_the_right_people(project, mail):
    _configure(project, mail)
    before = datetime.now(timezone.utc)
    sent = project.cli(*send_args(), env=ENV)
    assert sent.returncode == 0, sent.stderr
    assert "7 sent" in sent.stdout  # the relay said 250 to everyone: only the DSNs tell the truth
    # three unknown users and the full mailbox come back as real DSNs, each to its own VERP return path
    dsns = mail.wait_messages(mail.bounce_address, 4)
    to = sorted(email.message_from_bytes(p.read_bytes())["To"] for p in dsns)
    assert all(re.fullmatch(r"bounces\+b\d+-[0-9a-z]+-[0-9a-f]{16}@bounce\.test", t) for t in to), to
    assert len(set(to)) == 4

    reader, fan, critic = (_received(mail, a) for a in LIVE)
    # the Date header is when the copy left, not --now (2026-11-23)
    assert parsedate_to_datetime(reader["Date"]) >= before.replace(microsecond=0) - timedelta(seconds=1)
    assert reader["Feedback-ID"] == "endurance:2026-W47:newsletter:endurance-info.com"
    # the complaint: the critic's provider reports the copy it got
    _submit(mail, "fbl@live.test", "bounces@bounce.test", _arf(mail.messages("critic@live.test")[0].read_bytes()))
    # the mailto unsubscribe of the fan's copy, sent with someone else's From: it acts on the fan, not on the reader
    uri = re.search(r"<mailto:([^>]+)>", str(fan["List-Unsubscribe"])).group(1)
    address, _, query = uri.partition("?")
    subject = query.removeprefix("subject=").replace("%20", " ")
    _submit(mail, "reader@live.test", address, f"From: reader@live.test\r\nTo: {address}\r\nSubject: {subject}\r\n"
            f"Message-ID: <unsub-1@live.test>\r\n\r\nunsubscribe\r\n".encode())
    # a bounce whose token was altered, naming the reader: it must not suppress anyone
    token = re.search(r"bounces\+(b[^@]+)@", str(reader["Return-Path"])).group(1)
    forged = token[:-4] + ("aaaa" if not token.endswith("aaaa") else "bbbb")
    dsn = dsns[0].read_bytes().replace(b"dead1@dead.test", b"reader@live.test").replace(b"dead2@dead.test", b"reader@live.test")
    dsn = re.sub(rb"bounces\+b[0-9a-z-]+@", f"bounces+{forged}@".encode(), dsn)
    dsn = re.sub(rb"(?m)^Message-I[dD]: .*$", b"Message-Id: <forged-1@attacker.test>", dsn, count=1)
    _submit(mail, "", f"bounces+{forged}@bounce.test", dsn)
    # a vacation notice to the reader's return path (RFC 3834 answers the Return-Path) and a stray human mail
    _submit(mail, "reader@live.test", f"bounces+{token}@bounce.test",
            b"From: reader@live.test\r\nSubject: Absence du bureau\r\nAuto-Submitted: auto-replied\r\n"
            b"Message-ID: <vac-1@live.test>\r\n\r\nJe suis absent.\r\n")
    _submit(mail, "someone@live.test", "bounces@bounce.test",
            b"From: someone@live.test\r\nSubject: question\r\nMessage-ID: <q-1@live.test>\r\n\r\nHello?\r\n")
    mail.wait_messages(mail.bounce_address, 9)

    env = {**ENV, "PUBLISHER_BOUNCES_PASSWORD": PASSWORD}
    run = project.cli("bounces", env=env)
    assert run.returncode == 0, run.stderr
    assert "9 message(s) read in INBOX" in run.stdout, run.stdout
    assert "7 moved to publisher-processed" in run.stdout
    assert "left in INBOX: 1 not understood, 1 with a token that does not verify" in run.stdout
    assert suppressed(project) == {**{a: "hard-bounce" for a in DEAD}, "critic@live.test": "complaint",
                                   "fan@live.test": "unsubscribed"}
    assert PASSWORD not in run.stdout + run.stderr
    # processed mail moved, never deleted; the two it did not act on are still in INBOX
    assert len(mail.messages(mail.bounce_address, "publisher-processed")) == 7
    left = [email.message_from_bytes(p.read_bytes())["Subject"] for p in mail.messages(mail.bounce_address)]
    assert sorted(left) == ["Undelivered Mail Returned to Sender", "question"]

    again = project.cli("bounces", env=env)  # the same mailbox again: nothing counted twice
    assert "2 message(s) read in INBOX" in again.stdout and "0 address(es) suppressed" in again.stdout

    status = project.cli("--now", "2026-11-24T09:00:00+01:00", "status", "endurance", "--edition", EDITION, check=True)
    assert "delivered 3, bounced 4 (hard 3, soft 1), complaints 1, unsubscribes 1" in status.stdout, status.stdout
    assert "WARNING: 57.1% of this edition bounced (above 2%)" in status.stdout
    assert "WARNING: 14.29% of this edition was reported as spam (above 0.1%)" in status.stdout
    assert "suppressed addresses: 5 (complaint 1, hard-bounce 3, unsubscribed 1)" in status.stdout
    db = sqlite3.connect(store_path(project))
    try:
        soft = db.execute("SELECT email, edition_key, detail FROM feedback WHERE kind='soft-bounce'").fetchall()
    finally:
        db.close()
    assert soft == [(FULL, f"endurance/{EDITION}", "4.2.2 X-Postfix; mailbox full")]  # one soft bounce: not suppressed yet


def test_the_scheduler_reads_the_bounce_mailbox_every_hour(project, mail):
    _configure(project, mail)
    env = {**ENV, "PUBLISHER_BOUNCES_PASSWORD": PASSWORD}
    first = project.cli("--now", "2026-11-23T09:00:00+01:00", "run", env=env)
    assert first.returncode == 0, first.stderr
    assert "bounces: the bounce mailbox was never read" in first.stdout
    # Postfix's DSNs arrive after the send, some maybe before that first read
    mail.wait_messages(mail.bounce_address, 4, folders=("", "publisher-processed"))
    soon = project.cli("--now", "2026-11-23T09:30:00+01:00", "run", env=env)
    assert soon.returncode == 0 and "bounces:" not in soon.stdout  # read 30 minutes ago: not due
    later = project.cli("--now", "2026-11-23T10:01:00+01:00", "run", env=env)
    assert later.returncode == 0, later.stderr
    assert "bounces: last read 2026-11-23 08:00 UTC, every 1h" in later.stdout
    assert suppressed(project) == {a: "hard-bounce" for a in DEAD}
    assert mail.messages(mail.bounce_address) == []  # every DSN understood and moved, whichever run read it
    assert len(mail.messages(mail.bounce_address, "publisher-processed")) == 4
