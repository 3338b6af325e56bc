"""Sign-up with double opt-in, tested as a reader would: a real `publisher serve`, aiosmtpd, headless Chromium."""

from __future__ import annotations

import sqlite3
from email import policy
from email.parser import BytesParser
from email.utils import getaddresses
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

import pytest

from support.browser import chromium, require_chromium
from support.email_project import ENV, _query, live_without_subscribers, send_args, store_path
from support.smtp_servers import SmtpServer
from support.user_errors import edit
from support.web import PUBLIC, csrf, link_in, local, request, serving, wait_for

READER = "claire.martin@example.org"


def _mails_to(srv: SmtpServer, address: str, subject_part: str) -> list:
    return [r.message() for r in srv.received if r.rcpt == address and subject_part in str(r.message()["Subject"])]


def _sign_up(base: str, address: str, *lists: str, extra: dict | None = None) -> tuple[int, bytes]:
    """Fill the form of /subscribe/endurance with urllib, as a browser without JavaScript would post it."""
    page = request(f"{base}/subscribe/endurance")[1]
    fields = {"csrf": csrf(page), "form": "endurance", "email": address, "name": "", "website": "", "consent": "yes"}
    form = [*(fields | (extra or {})).items(), *(("list", lst) for lst in (lists or ("endurance",)))]
    return request(f"{base}/subscribe", urlencode(form).encode())


@pytest.mark.browser
def test_a_reader_signs_up_in_chromium_confirms_and_gets_the_next_edition(project):
    require_chromium()
    with SmtpServer() as srv:
        live_without_subscribers(project, srv.port)
        with serving(project) as (_, unsubscribe), chromium() as driver:
            base = unsubscribe.rsplit("/", 1)[0]  # http://127.0.0.1:PORT/newsletter
            driver.get(f"{base}/subscribe/endurance")
            assert "S'abonner à Endurance Hebdo" in driver.title
            driver.find_element("name", "email").send_keys(READER)
            driver.find_element("name", "name").send_keys("Claire Martin")
            driver.find_element("css selector", "input[name=consent]").click()
            driver.find_element("css selector", "button[type=submit]").click()
            assert "Consultez votre boîte de réception" in wait_for(lambda: driver.find_element("tag name", "h1").text
                                                                  if "Consultez" in driver.page_source else "", what="the answer")
            assert _query(project, "SELECT email FROM subscribers") == []  # nothing before the confirmation

            confirm = wait_for(lambda: _mails_to(srv, READER, "Confirmez"), what="the confirmation mail")[0]
            text = confirm.get_content()
            link = link_in(text, "/newsletter/confirm")
            assert link.startswith(f"{PUBLIC}/confirm?t=") and READER not in link
            assert "Endurance Hebdo" in text and "48 heures" in text
            assert confirm["Auto-Submitted"] == "auto-generated"
            # the confirmation went through the ledger, as its own channel, once
            assert _query(project, "SELECT channel, state FROM deliveries WHERE target = ?", (READER,)) == [("notice", "sent")]

            driver.get(local(link, base))  # opening the link changes nothing by itself (link scanners)
            assert _query(project, "SELECT email FROM subscribers") == []
            driver.find_element("css selector", "button[type=submit]").click()
            wait_for(lambda: "Abonnement confirmé" in driver.page_source, what="the confirmation page")
            welcome = wait_for(lambda: _mails_to(srv, READER, "Bienvenue"), what="the welcome mail")[0]
            assert "/newsletter/unsubscribe/preferences?t=" in welcome.get_content()

        consent = _query(project, "SELECT kind, lists, source, ip, consent, given_at, confirmed_at FROM consents"
                                  " WHERE email = ?", (READER,))
        assert len(consent) == 1
        kind, lists, source, ip, version, given, confirmed = consent[0]
        assert (kind, lists, source, ip) == ("opt-in", "endurance", "form:endurance", "127.0.0.0")
        assert version.startswith("sha256:") and given <= confirmed
        assert _query(project, "SELECT x.list, o.source FROM subscriptions x JOIN origins o ON o.id = x.origin") == [
            ("endurance", "form:endurance")]

        proc = project.cli(*send_args(), env=ENV)  # the next edition
        assert proc.returncode == 0, proc.stderr
        edition = _mails_to(srv, READER, "Endurance Hebdo –")
        assert len(edition) == 1
        assert edition[0]["To"].addresses[0].display_name == "Claire Martin"
        one_click = str(edition[0]["List-Unsubscribe"]).split(",")[0].strip("<> ")
        assert "claire" not in one_click and "Y2xhaXJl" not in one_click  # opaque: not even base64 of the address


def test_forged_expired_and_replayed_confirmation_links_are_refused(project):
    with SmtpServer() as srv:
        live_without_subscribers(project, srv.port)
        with serving(project) as (_, unsubscribe):
            base = unsubscribe.rsplit("/", 1)[0]
            for who in ("early@example.org", "late@example.org"):
                assert _sign_up(base, who)[0] == 200
            links = {who: link_in(wait_for(lambda: _mails_to(srv, who, "Confirmez"), what=who)[0].get_content(),
                                  "/newsletter/confirm") for who in ("early@example.org", "late@example.org")}
            token = links["early@example.org"].split("?t=")[1]
            signup_id, mac = token.split(".")
            forged = [f"{signup_id}.{mac[:-2]}{'AA' if not mac.endswith('AA') else 'BB'}", f"{signup_id[:-1]}x.{mac}",
                      f"{links['late@example.org'].split('?t=')[1].split('.')[0]}.{mac}", "garbage", ""]
            for bad in forged:
                status, body = request(f"{base}/confirm?t={bad}", b"")
                assert status == 400 and "pas valide".encode() in body, bad
            assert _query(project, "SELECT email FROM subscribers") == []

            early = local(links["early@example.org"], base)
            status, body = request(early, b"")  # the genuine link, within 48 h
            assert status == 200 and "Abonnement confirmé".encode() in body
            status, body = request(early, b"")  # replayed
            assert status == 400 and "a déjà servi".encode() in body
            assert request(early)[0] == 400  # its page is gone too
        # two days and an hour later (time is a parameter: the server runs at that moment)
        later = (datetime.now(timezone.utc) + timedelta(hours=49)).isoformat(timespec="seconds")
        with serving(project, "--now", later) as (_, unsubscribe):
            status, body = request(local(links["late@example.org"], unsubscribe), b"")
            assert status == 400 and "a expiré".encode() in body
    assert _query(project, "SELECT email FROM subscribers") == [("early@example.org",)]
    assert _query(project, "SELECT count(*) FROM consents")[0][0] == 1


def test_the_answer_is_the_same_for_new_pending_subscribed_and_suppressed_addresses(project):
    with SmtpServer() as srv:
        live_without_subscribers(project, srv.port)
        csv = project.root / "known.csv"
        csv.write_text("email,series\nsub@example.org,endurance\nbounced@example.org,endurance\ngone@example.org,endurance\n",
                       encoding="utf-8")
        project.cli("subscribers", "import", str(csv), check=True)
        db = sqlite3.connect(store_path(project))
        db.executemany("INSERT INTO suppression (email, reason, created_at) VALUES (?, ?, '2026-11-01T00:00:00+00:00')",
                       [("bounced@example.org", "hard-bounce"), ("gone@example.org", "unsubscribed")])
        db.commit()
        db.close()
        with serving(project) as (_, unsubscribe):
            base = unsubscribe.rsplit("/", 1)[0]
            answers = {}
            for who in ("new@example.org", "new@example.org", "sub@example.org", "bounced@example.org", "gone@example.org"):
                status, body = _sign_up(base, who)
                answers.setdefault(who, set()).add((status, body))
            assert len({a for s in answers.values() for a in s}) == 1  # byte for byte the same page
            wait_for(lambda: _mails_to(srv, "gone@example.org", "Confirmez"), what="the unsubscribed reader's confirmation")
            wait_for(lambda: len(_mails_to(srv, "new@example.org", "Confirmez")) == 2, what="both confirmations")
            # an unsubscribed reader comes back only through the link; a bounce stays suppressed, mailed nothing
            assert not _mails_to(srv, "bounced@example.org", "Confirmez") and not _mails_to(srv, "sub@example.org", "Confirmez")
            assert _query(project, "SELECT reason FROM suppression WHERE email = 'gone@example.org'") == [("unsubscribed",)]
            link = link_in(_mails_to(srv, "gone@example.org", "Confirmez")[0].get_content(), "/newsletter/confirm")
            assert request(local(link, base), b"")[0] == 200
            assert _query(project, "SELECT reason FROM suppression ORDER BY email") == [("hard-bounce",)]


def test_abuse_guards_honeypot_csrf_rate_limits_and_the_daily_cap(project):
    with SmtpServer() as srv:
        live_without_subscribers(project, srv.port)
        edit(project.settings, r"^port = 8025$", "port = 8025\nsignups_per_ip_per_hour = 6\nconfirmations_per_address_per_day = 2")
        with serving(project) as (_, unsubscribe):
            base = unsubscribe.rsplit("/", 1)[0]
            # a bot fills the hidden field: the same answer, and nothing happens
            status, body = _sign_up(base, "bot@example.org", extra={"website": "http://spam.example"})
            assert status == 200 and "Consultez".encode() in body
            # no token, and a page of another site: refused; the publisher's own site (embedded form): accepted
            form = urlencode({"email": "x@example.org", "consent": "yes", "list": "endurance", "form": "embed"}).encode()
            assert request(f"{base}/subscribe", form)[0] == 403
            assert request(f"{base}/subscribe", form, headers={"Origin": "https://evil.example"})[0] == 403
            assert request(f"{base}/subscribe", form, headers={"Origin": "https://www.endurance-info.com"})[0] == 200
            # the daily cap of confirmation mails per address
            for _ in range(3):
                assert _sign_up(base, "often@example.org", "wec")[0] == 200
            # per IP: six sign-ups an hour (the bot's counted too), then 429
            assert _sign_up(base, "sixth@example.org")[0] == 200
            assert _sign_up(base, "seventh@example.org")[0] == 429
            wait_for(lambda: len(_mails_to(srv, "often@example.org", "Confirmez")) == 2, what="two confirmations")
            wait_for(lambda: _mails_to(srv, "x@example.org", "Confirmez"), what="the embedded form's confirmation")
    assert not _mails_to(srv, "bot@example.org", "Confirmez")
    assert len(_mails_to(srv, "often@example.org", "Confirmez")) == 2
    assert _query(project, "SELECT count(*) FROM signups WHERE email = 'often@example.org'")[0][0] == 2


def test_in_outbox_mode_the_confirmation_is_an_eml_file_with_its_ledger_row(project):
    with serving(project) as (_, unsubscribe):  # the sample settings: delivery = "outbox"
        base = unsubscribe.rsplit("/", 1)[0]
        assert _sign_up(base, READER)[0] == 200
        files = wait_for(lambda: list((project.root / "var" / "outbox" / "notices").glob("confirm_*/*.eml")),
                         what="the outbox file")
    assert [f.name for f in files] == [f"{READER}.eml"]
    msg = BytesParser(policy=policy.default).parsebytes(files[0].read_bytes())
    assert msg["Subject"] == "Confirmez votre abonnement à Endurance-Info" and msg["To"] == READER
    link = link_in(msg.get_content(), "/newsletter/confirm")
    assert link.startswith(f"{PUBLIC}/confirm?t=")
    assert _query(project, "SELECT channel, state FROM deliveries WHERE target = ?", (READER,)) == [("outbox:notice", "sent")]
    assert "sign-up mails (confirmation, welcome): 1 sent" in project.cli("status", check=True).stdout


def test_a_slow_relay_neither_cuts_the_confirmation_short_nor_holds_the_pages(project):
    with SmtpServer(delay=3) as srv:  # each message answered 3 s after its end of data
        live_without_subscribers(project, srv.port)
        edit(project.settings, r"^port = 8025$", "port = 8025\ntimeout = 1\nworkers = 1")
        with serving(project) as (_, unsubscribe):
            base = unsubscribe.rsplit("/", 1)[0]
            assert _sign_up(base, READER)[0] == 200  # answered at once; the mail goes out after the answer
            assert request(f"{base}/subscribe")[0] == 200  # the only worker is free again
            wait_for(lambda: _query(project, "SELECT state FROM deliveries WHERE target = ?", (READER,)) == [("sent",)],
                     what="the confirmation recorded as sent")  # longer than [web].timeout, yet not cut short
    assert len(_mails_to(srv, READER, "Confirmez")) == 1


def test_a_hostile_form_cannot_add_headers_or_recipients_to_the_confirmation(project):
    """CR/LF in the name or the address of a form post: no header is added, nobody else is mailed."""
    with SmtpServer() as srv:
        live_without_subscribers(project, srv.port)
        with serving(project) as (_, unsubscribe):
            base = unsubscribe.rsplit("/", 1)[0]
            hostile_name = "Claire\r\nBcc: victime@example.net\r\nSubject: gagné"
            assert _sign_up(base, READER, extra={"name": hostile_name})[0] == 200
            mail = wait_for(lambda: _mails_to(srv, READER, "Confirmez"), what="the confirmation")[0]
            for address in ("lecteur@example.org\r\nBcc: victime@example.net", "lecteur@example.org\nRCPT TO:<victime@example.net>",
                            "<victime@example.net>,lecteur@example.org"):
                status, body = _sign_up(base, address)
                assert status in (200, 400) and b"Traceback" not in body
            received = [(r.rcpt, r.message()) for r in srv.received]
    assert {rcpt for rcpt, _ in received} <= {READER, "lecteur@example.org"}  # nobody else, whatever was posted
    assert "victime@example.net" not in {rcpt for rcpt, _ in received}
    for _, msg in received:
        assert msg["Bcc"] is None and len(msg.get_all("Subject")) == 1 and "gagné" not in str(msg["Subject"])
    # the name went in as one line of display text: the only address of the To header is the reader's
    assert [addr for _, addr in getaddresses([str(mail["To"])])] == [READER]
