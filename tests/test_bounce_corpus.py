"""The corpus of DSN, ARF and auto-reply samples (tests/data/bounces/README.md says where each came from):
each gets the verdict its MTA meant, and a report acts only through a token that verifies."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from publisher.feedback.apply import resolve
from publisher.feedback.classify import classify
from publisher.feedback.tokens import TokenSigner, find_tokens, tagged
from publisher.store.db import Store
from publisher.store.feedback import Feedback, edition_number, record, subscriber_ids
from publisher.store.subscribers import SubscriberRow, upsert
from publisher.web.tokens import Signer

CORPUS = Path(__file__).parent / "data" / "bounces"
NOW = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)

EXPECTED = {  # file -> (kind, failing addresses named by the report)
    "postfix_01.txt": ("hard-bounce", {"xxxxx@local.ie"}),
    "postfix_02.txt": ("hard-bounce", {"yyyyy@digicool.com"}),
    "exim_01.txt": ("hard-bounce", {"userx@its.example.nl"}),
    "sendmail_01.txt": ("hard-bounce", {"zzzzz@nfg.nl", "zzzzz@shaft.coal.nl"}),
    "dsn_01.txt": ("hard-bounce", {"userx@example.com"}),
    "dsn_09.txt": ("hard-bounce", {"userx@example.com"}),
    "dsn_05.txt": ("delay", {"userx@example.cz"}),
    "dsn_17.txt": ("delay", {"userx@example.fi"}),
    "microsoft_01.txt": ("hard-bounce", {"userx@example.COM"}),
    "microsoft_02.txt": ("hard-bounce", {"userx@example.COM"}),
    "microsoft_04.txt": ("hard-bounce", {"userx@example.COM"}),
    "simple_17.txt": ("hard-bounce", {"userx@example.com"}),
    "simple_28.txt": ("delay", set()),
    "simple_21.txt": ("delay", set()),
    "yahoo_01.txt": ("hard-bounce", {"userx@example.com"}),
    "yahoo_02.txt": ("hard-bounce", {"userx@example.es"}),
    "qmail_01.txt": ("hard-bounce", {"userx@example.de"}),
    "qmail_02.txt": ("hard-bounce", {"userx@example.com"}),
    "aol_01.txt": ("hard-bounce", {"screenname@aol.com"}),
    "amazon-ses_01.txt": ("hard-bounce", {"userx@example.com"}),
    "mailbox-full_01.txt": ("soft-bounce", {"userx@example.com"}),
    "arf-rfc5965_01.txt": ("complaint", set()),
    "vacation_01.txt": ("auto-reply", set()),
    "outlook-ooo_01.txt": ("auto-reply", set()),
}


def test_every_sample_has_an_expected_verdict_and_a_line_in_the_readme():
    files = {p.name for p in CORPUS.glob("*.txt")}
    assert files == set(EXPECTED)
    readme = (CORPUS / "README.md").read_text(encoding="utf-8")
    assert all(name in readme for name in files)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_verdict(name):
    verdict = classify((CORPUS / name).read_bytes())
    kind, addresses = EXPECTED[name]
    assert verdict.kind == kind
    if kind in ("hard-bounce", "soft-bounce", "delay") and addresses:
        assert set(verdict.addresses) == addresses
    assert verdict.acts == (kind in ("hard-bounce", "soft-bounce", "complaint"))


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "store.sqlite3")
    upsert(s, [SubscriberRow("userx@example.com", "X", ("wec",)), SubscriberRow("other@example.com", "O", ("wec",))], NOW)
    yield s
    s.close()


def _addressed(raw: bytes, to: str) -> bytes:
    """A sample as the delivery agent hands it over when it came to `to` (Delivered-To on top)."""
    return f"Delivered-To: {to}\r\n".encode() + raw


@pytest.mark.parametrize("name", [n for n, (k, _) in EXPECTED.items() if k in ("hard-bounce", "soft-bounce")])
def test_a_sample_sent_to_a_verp_address_acts_on_that_subscriber_only(store, name):
    tokens = TokenSigner(b"k" * 32)
    key = "endurance/2026-W47"
    number, sid = edition_number(store, key), subscriber_ids(store, ["userx@example.com"])["userx@example.com"]
    address = tagged("bounces@endurance-info.test", tokens.token("b", number, sid, key, "userx@example.com"))
    verdict = classify(_addressed((CORPUS / name).read_bytes(), address))
    resolved = resolve(store, verdict, f"mail:{name}", tokens, Signer(b"w" * 32))
    assert [(r.email, r.kind, r.edition_key) for r in resolved.reports] == [("userx@example.com", verdict.kind, key)]
    # the same report under another secret (a forger's), or for someone else's id: refused
    forged = classify(_addressed((CORPUS / name).read_bytes(), tagged(
        "bounces@endurance-info.test", TokenSigner(b"f" * 32).token("b", number, sid, key, "userx@example.com"))))
    assert resolve(store, forged, f"mail:{name}", tokens, Signer(b"w" * 32)).reports == []
    other = subscriber_ids(store, ["other@example.com"])["other@example.com"]
    swapped = address.replace(f"-{sid}-", f"-{other}-")  # ids under 10 read the same in base 36
    assert swapped != address and find_tokens(swapped) and resolve(store, classify(_addressed((CORPUS / name).read_bytes(), swapped)),
                                            f"mail:{name}", tokens, Signer(b"w" * 32)).reports == []


def test_soft_bounces_suppress_only_past_the_limit_in_distinct_editions(store):
    def soft(source, edition):
        return record(store, [Feedback(source, "userx@example.com", "soft-bounce", edition, "4.2.2 mailbox full")], NOW, 3)

    assert soft("a", "endurance/2026-W45") == []
    assert soft("b", "endurance/2026-W45") == []  # the same edition again: still one edition
    assert soft("c", "endurance/2026-W46") == []
    assert soft("c", "endurance/2026-W46") == []  # the same report read twice counts once
    assert soft("d", "endurance/2026-W47") == [("userx@example.com", "hard-bounce")]


def test_a_mailto_unsubscribe_with_the_token_only_in_the_subject_acts_on_whom_it_names(store):
    """Some clients and relays drop the +TOKEN of the address; the subject carries it too. The From is ignored."""
    tokens = TokenSigner(b"k" * 32)
    key = "endurance/2026-W47"
    sid = subscriber_ids(store, ["userx@example.com"])["userx@example.com"]
    token = tokens.token("u", edition_number(store, key), sid, key, "userx@example.com")
    raw = (f"From: other@example.com\r\nTo: unsubscribe@endurance-info.test\r\nSubject: unsubscribe {token}\r\n"
           f"Message-ID: <u1@example.com>\r\n\r\nplease\r\n").encode()
    verdict = classify(raw)
    assert verdict.kind == "unsubscribe"
    resolved = resolve(store, verdict, "mail:<u1@example.com>", tokens, Signer(b"w" * 32))
    assert [(r.email, r.kind) for r in resolved.reports] == [("userx@example.com", "unsubscribed")]
    # without a token there is nobody to unsubscribe: the message is not understood, and left
    assert classify(raw.replace(token.encode(), b"")).kind == "unknown"
