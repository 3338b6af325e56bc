"""The MIME bytes of an edition: built once, personalised by filling slots, and still correct MIME."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from email import policy
from email.header import decode_header, make_header
from email.parser import BytesParser

import pytest

from publisher.app import load_settings
from publisher.channels.email.message import SAMPLE_EMAIL, Recipient, build, preview_eml
from publisher.config import Campaign
from publisher.models import Article, Edition, RenderedEdition

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
TEXT = "Endurance Hebdo — semaine du 16 au 22 novembre\n\n.un point en début de ligne\nVous recevez ceci à %%EMAIL%%.\nSe désinscrire : %%UNSUBSCRIBE_URL%%\n"
HTML = ("<html><body><p>Toyota s'impose à Bahreïn « enfin »</p>\n" + "<p>" + "Hypercar " * 40 + "</p>\n"
        '<p>Bonjour %%NAME%%, <a href="%%UNSUBSCRIBE_URL%%">Se désinscrire</a> (%%EMAIL%%)</p>\n.\n</body></html>')


@pytest.fixture
def setup(project):
    settings = load_settings(project.settings)
    campaign = Campaign(name="endurance", title="Endurance Hebdo é", series=("wec",))
    art = Article(id="1", link="https://x.org/a", title="t", summary="s", published=NOW)
    edition = Edition(campaign="endurance", id="2026-W47", window_start=NOW, window_end=NOW, slot=NOW, articles=(art,))
    rendered = RenderedEdition(edition=edition, subject="Endurance Hebdo – Bahreïn\r\nBcc: victim@example.com",
                               preheader="p", html=HTML, text=TEXT)
    return settings, campaign, rendered


def _parse(data: bytes):
    return BytesParser(policy=policy.default).parsebytes(data)


RECIPIENTS = [
    Recipient("a@example.org", "Élodie d'Ornano", "https://e.example/unsub?t=abc.DEF_-x&y=1", "m1@endurance-info.com"),
    Recipient("very.long.address.with.many.parts+tag@sub.domain.example.com", "", "https://e.example/u?t=" + "Z" * 180,
              "m2@endurance-info.com"),
    Recipient("x=y@example.org", 'Jean "JJ" Dupont', "https://e.example/u?t=a=b", "m3@endurance-info.com"),
]


@pytest.mark.parametrize("r", RECIPIENTS, ids=lambda r: r.email[:12])
def test_personalised_bytes_decode_to_the_rendered_parts_with_values(setup, r):
    settings, campaign, rendered = setup
    msg = _parse(build(rendered, campaign, settings, NOW).personalise(r))
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    want_text = TEXT.replace("%%EMAIL%%", r.email).replace("%%UNSUBSCRIBE_URL%%", r.unsubscribe_url)
    assert text.replace("\r\n", "\n") == want_text
    esc = lambda v: v.replace("&", "&amp;").replace('"', "&quot;").replace("'", "&#x27;")  # noqa: E731
    want_html = (HTML.replace("%%EMAIL%%", esc(r.email)).replace("%%UNSUBSCRIBE_URL%%", esc(r.unsubscribe_url))
                 .replace("%%NAME%%", esc(r.name)))
    assert html.replace("\r\n", "\n") == want_html + "\n"
    assert msg["To"].addresses[0].addr_spec == r.email
    assert msg["To"].addresses[0].display_name == r.name
    assert msg["Message-ID"] == f"<{r.message_id}>"
    assert str(msg["List-Unsubscribe"]).startswith(f"<{r.unsubscribe_url}>")


def test_headers(setup):
    settings, campaign, rendered = setup
    raw = preview_eml(rendered, campaign, settings, NOW)
    msg = _parse(raw)
    assert msg["Subject"] == "Endurance Hebdo – Bahreïn Bcc: victim@example.com"  # one line: no header injected
    assert msg["Bcc"] is None
    assert msg["From"] == "Endurance-Info <newsletter@endurance-info.com>"
    assert msg["Reply-To"] == "redaction@endurance-info.com"
    assert msg["Date"] == "Mon, 23 Nov 2026 08:00:00 +0000"
    assert re.fullmatch(r"<endurance\.2026-W47\.[0-9a-f]{24}@endurance-info\.com>", msg["Message-ID"])
    assert msg["List-Id"] == "Endurance Hebdo é <endurance.endurance-info.com>"
    assert "<mailto:unsubscribe@endurance-info.com?subject=unsubscribe>" in str(msg["List-Unsubscribe"])
    assert msg["To"].addresses[0].addr_spec == SAMPLE_EMAIL
    assert b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in raw  # exactly, on one line
    assert b"=?utf-8?" in raw.split(b"\r\n\r\n")[0]  # RFC 2047 for the accents


def test_bytes_are_wire_ready(setup):
    settings, campaign, rendered = setup
    template = build(rendered, campaign, settings, NOW)
    for r in RECIPIENTS:
        raw = template.personalise(r)
        assert raw.endswith(b"\r\n")
        lines = raw.split(b"\r\n")
        assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")
        assert all(len(line) <= 78 for line in lines[lines.index(b""):]), "QP body lines stay short"
        assert all(len(line) <= 998 for line in lines)
        assert not any(line.startswith(b".") for line in lines), "no dot-stuffing needed on the wire"
        assert b"%%" not in raw
        assert all(b < 128 for b in raw), "7-bit clean"


def test_message_id_is_stable_per_recipient_and_differs_between_them(setup):
    settings, campaign, rendered = setup
    t = build(rendered, campaign, settings, NOW)
    assert t.message_id("a@example.org") == build(rendered, campaign, settings, NOW).message_id("a@example.org")
    assert t.message_id("a@example.org") != t.message_id("b@example.org")


def test_copies_differ_only_in_personal_parts(setup):
    settings, campaign, rendered = setup
    t = build(rendered, campaign, settings, NOW)
    a = t.personalise(RECIPIENTS[0]).split(b"\r\n")
    b = t.personalise(Recipient("b@example.org", "B", "https://e.example/unsub?t=zzz", "m9@x")).split(b"\r\n")
    differing = {i for i, (x, y) in enumerate(zip(a, b)) if x != y}
    assert len(a) == len(b) and 0 < len(differing) <= 12


# -- display names a subscriber typed: shown as typed, never decoded as markup, never another address ----------

HOSTILE_NAMES = [
    "=?utf-8?q?Admin?=",
    "=?UTF-8?B?QWRtaW4=?=",
    "=?utf-8?q?Admin?= <boss@evil.example>",
    "Support =?utf-8?q?=3Cceo=40evil=2Eexample=3E=2C_x=40evil=2Eexample?=",
    "Zoé =?iso-8859-1?q?=E9?= Ünïcode",
    "x=?y?z?=",
    'Jean "JJ" Dupont',
    "Dupont, Jean",
    "Jean <jean@evil.example>, other@evil.example",
    "back\\slash \"quote\" (comment) ; colon: [x]",
    "Jean\r\nBcc: victim@example.com",
    "Léa\rTo: second@evil.example\nX: y",
    "Élodie d'Ornano",
    "山田太郎 🏎️ " * 14,
    "é" * 150 + " =?utf-8?q?x?=",
    "A" * 120 + ', "b@evil.example" <c@evil.example>',
    "Ἀλέξανδρος, Ελλάδα\u2028Bcc: z@evil.example",
]


def _expected(name: str) -> str:
    from publisher.text import one_line

    return one_line(name)[:200]  # what the import keeps: one line, at most 200 characters


def _check_to(msg, address: str, name: str) -> None:
    to = msg["To"]
    assert len(msg.get_all("To")) == 1 and msg["Bcc"] is None and msg["X"] is None
    assert not to.defects, to.defects
    assert [a.addr_spec for a in to.addresses] == [address]
    assert to.addresses[0].display_name == _expected(name)


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
def test_to_header_shows_the_name_as_typed(setup, name):
    settings, campaign, rendered = setup
    raw = build(rendered, campaign, settings, NOW).personalise(Recipient("a@example.org", name, "https://e.example/u", "m@x"))
    head = raw.split(b"\r\n\r\n")[0].decode("ascii")
    assert all(len(line) <= 998 for line in head.split("\r\n"))
    _check_to(_parse(raw), "a@example.org", name)
    # RFC 2047 decoders (which drop the space between two encoded words, unlike Python's parser) agree
    value = re.search(r"\r\nTo: (.*?)\r\n(?! )", head, re.S).group(1).replace("\r\n", "")
    phrase = value.removesuffix("<a@example.org>").rstrip()
    if "=?" in phrase and not phrase.startswith('"'):
        assert str(make_header(decode_header(phrase))) == _expected(name)


def test_hostile_names_arrive_as_typed_through_a_real_relay(project):
    """The whole path: CSV import, `publisher send`, aiosmtpd, the stdlib parser on what the relay received."""
    import csv

    from support.email_project import ENV, prepared, send_args
    from support.smtp_servers import SmtpServer

    people = {f"nom{i:02d}@example.org": name for i, name in enumerate(HOSTILE_NAMES)}
    with SmtpServer() as srv:
        prepared(project, srv.port, 1)
        with (project.root / "names.csv").open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["email", "name", "series"])
            writer.writerows([address, name, "wec"] for address, name in people.items())
        project.cli("subscribers", "import", "names.csv", check=True)
        proc = project.cli(*send_args(), env=ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    received = {r.rcpt: r for r in srv.received}
    assert set(people) <= set(received)
    for address, name in people.items():
        _check_to(received[address].message(), address, name)


def test_a_name_too_long_for_one_encoded_word_keeps_lines_short_and_one_address(setup):
    """200 four-byte characters with no space: the one case split into two encoded words mid-run."""
    settings, campaign, rendered = setup
    name = "🏎" * 200
    raw = build(rendered, campaign, settings, NOW).personalise(Recipient("a@example.org", name, "https://e.example/u", "m@x"))
    head = raw.split(b"\r\n\r\n")[0].decode("ascii")
    assert max(len(line) for line in head.split("\r\n")) <= 998
    to = _parse(raw)["To"]
    assert [a.addr_spec for a in to.addresses] == ["a@example.org"] and not to.defects
    assert to.addresses[0].display_name.replace(" ", "") == name  # Python's parser adds a space between the words
    value = re.search(r"\r\nTo: (.*?)\r\n(?! )", head, re.S).group(1).replace("\r\n", "")
    assert str(make_header(decode_header(value.removesuffix("<a@example.org>").rstrip()))) == name  # RFC 2047: exact
