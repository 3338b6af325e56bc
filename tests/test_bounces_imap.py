"""`publisher bounces` against a real Dovecot: STARTTLS, what a user sees when the mailbox cannot be used,
and servers without MOVE (COPY and UID EXPUNGE of that one message) or without UIDPLUS (nothing removed)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from publisher.config import BouncesSettings
from publisher.feedback.mailbox import process
from publisher.feedback.tokens import TokenSigner, tagged
from publisher.store.db import Store
from publisher.store.feedback import edition_number, subscriber_ids
from publisher.store.subscribers import SubscriberRow, upsert
from publisher.web.tokens import Signer
from support.mail_system import PASSWORD, MailSystem, available

pytestmark = [pytest.mark.slow, pytest.mark.skipif(available() is not None, reason=str(available()))]

CORPUS = Path(__file__).parent / "data" / "bounces"
NOW = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)
KEY = b"imap-test-key-0123456789abcdef"
BASIC = "IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE IDLE"


def _settings(mail: MailSystem, **over) -> BouncesSettings:
    values = dict(host="127.0.0.1", port=mail.imaps_port, security="tls", username=mail.login, ca_file=str(mail.certs.ca))
    return BouncesSettings(**{**values, **over})


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "store.sqlite3")
    upsert(s, [SubscriberRow("userx@example.com", "X", ("wec",))], NOW)
    yield s
    s.close()


def _fill(mail: MailSystem, store: Store) -> None:
    """Two DSNs from the corpus to a valid VERP address, one vacation notice, one stray mail."""
    key = "endurance/2026-W47"
    token = TokenSigner(KEY).token("b", edition_number(store, key), subscriber_ids(store, ["userx@example.com"])["userx@example.com"],
                                   key, "userx@example.com")
    to = tagged("bounces@bounce.test", token)
    for name in ("dsn_01.txt", "exim_01.txt", "vacation_01.txt"):
        mail.deliver(mail.bounce_address, f"Delivered-To: {to}\r\n".encode() + (CORPUS / name).read_bytes())
    mail.deliver(mail.bounce_address, b"From: a@example.com\r\nSubject: hello\r\nMessage-ID: <h@example.com>\r\n\r\nhi\r\n")


@pytest.mark.parametrize("capability, left_in_inbox", [
    (None, 1),  # MOVE
    (BASIC + " UIDPLUS", 1),  # COPY, then UID EXPUNGE of that message only
    (BASIC, 4),  # neither: copied, kept, and marked so that it is not read twice
], ids=["move", "copy-uid-expunge", "copy-and-keyword"])
def test_understood_mail_is_moved_never_deleted(store, monkeypatch, capability, left_in_inbox):
    monkeypatch.setenv("PUBLISHER_BOUNCES_PASSWORD", PASSWORD)
    mail = MailSystem(imap_capability=capability)
    try:
        _fill(mail, store)
        first = process(store, _settings(mail), NOW, TokenSigner(KEY), Signer(KEY))
        assert (first.read, first.moved, first.left_unknown) == (4, 3, 1)
        assert first.suppressed == [("userx@example.com", "hard-bounce")]
        assert len(mail.messages(mail.bounce_address, "publisher-processed")) == 3
        assert len(mail.messages(mail.bounce_address)) == left_in_inbox
        again = process(store, _settings(mail), NOW, TokenSigner(KEY), Signer(KEY))
        assert (again.read, again.moved, again.suppressed) == (1, 0, [])  # only the stray mail, again
        assert len(mail.messages(mail.bounce_address, "publisher-processed")) == 3
    finally:
        mail.stop()


@pytest.fixture(scope="module")
def shared_mail():
    system = MailSystem()
    yield system
    system.stop()


def test_starttls(shared_mail, store, monkeypatch):
    monkeypatch.setenv("PUBLISHER_BOUNCES_PASSWORD", PASSWORD)
    report = process(store, _settings(shared_mail, port=shared_mail.imap_port, security="starttls"), NOW,
                     TokenSigner(KEY), Signer(KEY))
    assert report.read == len(shared_mail.messages(shared_mail.bounce_address))


def _project_settings(project, mail, **over) -> None:
    values = {**dict(host="127.0.0.1", port=mail.imaps_port, security="tls", username=mail.login, ca_file=str(mail.certs.ca)), **over}
    project.append_settings("[bounces]\n" + "".join(f'{k} = "{v}"\n' if isinstance(v, str) else f"{k} = {v}\n"
                                                    for k, v in values.items() if v is not None))


ENV = {"PUBLISHER_UNSUBSCRIBE_SECRET": "imap-test-unsubscribe-secret-123"}


@pytest.mark.parametrize("over, env, code, words", [
    ({}, {"PUBLISHER_BOUNCES_PASSWORD": "not-the-password"}, 4, "refused the login of bounces@bounce.test"),
    ({}, {}, 2, "PUBLISHER_BOUNCES_PASSWORD is not"),
    ({"ca_file": None}, {"PUBLISHER_BOUNCES_PASSWORD": PASSWORD}, 4, "cannot be trusted"),
    ({"port": 1}, {"PUBLISHER_BOUNCES_PASSWORD": PASSWORD}, 4, "cannot open an IMAP session with 127.0.0.1:1"),
], ids=["wrong-password", "no-password", "untrusted-certificate", "nothing-listens"])
def test_mailbox_problems_are_one_line(project, shared_mail, over, env, code, words):
    _project_settings(project, shared_mail, **over)
    proc = project.cli("bounces", env={**ENV, **env})
    assert proc.returncode == code, proc.stderr
    assert words in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if " INFO " not in ln]  # progress lines aside: one line
    assert errors == [proc.stderr.strip().splitlines()[-1]] and errors[0].startswith("publisher: error: ")
    assert "Traceback" not in proc.stderr and "not-the-password" not in proc.stderr


def test_without_a_bounce_mailbox(project):
    proc = project.cli("bounces", env=ENV)
    assert proc.returncode == 2
    assert "[bounces].host is not set" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr
