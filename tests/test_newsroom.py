"""The newsroom's web face (issue 12), tested as an editor would: a real `publisher serve`, `publisher run` at the
slot, aiosmtpd, headless Chromium; and a viewer, forged requests and the public archive."""

from __future__ import annotations

import dataclasses
import html
import http.client
import re
import sqlite3
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo
from urllib.parse import urlencode, urlsplit

import pytest
from selenium.common.exceptions import StaleElementReferenceException

from publisher.app import Context
from publisher.config import Campaign
from publisher.scheduler.due import Due, EditionState, due
from publisher.pipeline import fetch
from support.browser import chromium, horizontal_overflow, require_chromium, set_viewport
from support.email_project import ENV, NOW, _query, configure_live, send_args, store_path, write_subscribers
from support.smtp_servers import SmtpServer
from support.web import request, serving, wait_for

EDITOR, VIEWER = "redaction@endurance-info.com", "stagiaire@endurance-info.com"
PASSWORD = "correct horse battery staple"
BEFORE_SLOT = "2026-11-22T12:00:00+01:00"  # Sunday: 2026-W47 of endurance is the upcoming edition (slot Monday 08:00)
AT_SLOT, AFTER_APPROVAL = "2026-11-23T08:01:00+01:00", "2026-11-23T08:30:00+01:00"


def _notice(driver, starts: str, what: str) -> str:
    """The text of the page's notice once the answer page shows one starting with `starts`; the page before
    the click may still be there, and its elements go stale when the answer replaces it."""
    def read() -> list[str]:
        try:
            return [e.text for e in driver.find_elements("id", "notice") if e.text.startswith(starts)]
        except StaleElementReferenceException:
            return []
    return wait_for(read, what=what)[0]


def _fetched_with_readers(project) -> list[str]:
    """The sample feeds fetched into the project's store, and 3 subscribers of endurance."""
    ctx = Context.open(project.settings, now=datetime.fromisoformat(NOW))
    try:
        assert all(r.ok for r in fetch(ctx))
    finally:
        ctx.close()
    return write_subscribers(project, 3)


def _newsroom(project, port: int) -> list[str]:
    """Live mail to the local server, endurance needing approval, the feeds fetched, 3 subscribers, 2 users."""
    configure_live(project, port)
    path = project.root / "campaigns" / "endurance.toml"
    path.write_text(path.read_text(encoding="utf-8").replace('thin_week = "skip"\n', 'thin_week = "skip"\napproval = "required"\n'),
                    encoding="utf-8")
    readers = _fetched_with_readers(project)
    for who, role in ((EDITOR, "editor"), (VIEWER, "viewer")):
        proc = project.cli("users", "add", who, "--role", role, env={**ENV, "PUBLISHER_USER_PASSWORD": PASSWORD})
        assert proc.returncode == 0, proc.stderr
    return readers


def _post(url: str, fields: dict[str, str], cookie: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """A form POST without following redirects: (status, headers, body)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {"Content-Type": "application/x-www-form-urlencoded"} | ({"Cookie": cookie} if cookie else {})
    conn.request("POST", parts.path, urlencode(fields), headers)
    resp = conn.getresponse()
    out = resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    conn.close()
    return out


def _get(url: str, cookie: str) -> tuple[int, bytes]:
    return request(url, headers={"Cookie": cookie})


def _login(admin: str, who: str, password: str = PASSWORD) -> tuple[int, str | None]:
    """(status, "publisher_admin=..." cookie or None) of a login through the form."""
    page = request(f"{admin}/login")[1]
    token = re.search(rb'name="csrf" value="([^"]+)"', page).group(1).decode()
    status, headers, _ = _post(f"{admin}/login", {"csrf": token, "email": who, "password": password})
    cookie = headers.get("set-cookie", "")
    return status, cookie.split(";")[0] if cookie.startswith("publisher_admin=") else None


def _csrf(page: bytes) -> str:
    return re.search(rb'name="csrf" value="([^"]+)"', page).group(1).decode()


def _approvals(project) -> list[tuple]:
    return _query(project, "SELECT campaign, edition_id, action, who FROM approvals ORDER BY id")


@pytest.mark.browser
def test_an_editor_reviews_tests_and_approves_in_chromium_and_the_edition_goes_out_at_its_slot(project):
    require_chromium()
    with SmtpServer() as srv:
        readers = _newsroom(project, srv.port)
        # at its slot, before any approval: held (not skipped), nothing to readers, the editor told by mail, once
        for _ in range(2):
            proc = project.cli("--now", AT_SLOT, "run", env=ENV)
            assert proc.returncode == 0, proc.stderr
            assert "hold endurance/2026-W47: waiting for an editor's approval" in proc.stderr + proc.stdout
        assert not [r for r in srv.received if r.rcpt in readers]
        asks = [r for r in srv.received if r.rcpt == EDITOR]
        assert len(asks) == 1 and "waits for your approval" in str(asks[0].message()["Subject"])
        assert "/newsletter/admin/endurance/2026-W47" in asks[0].message().get_content()
        assert _query(project, "SELECT status FROM editions WHERE campaign='endurance' AND edition_id='2026-W47'") == []

        with serving(project, "--now", BEFORE_SLOT, env=ENV) as (_, unsubscribe), chromium() as driver:
            base = unsubscribe.rsplit("/", 1)[0]
            driver.get(f"{base}/admin/")
            assert driver.current_url.endswith("/admin/login")
            driver.find_element("name", "email").send_keys(EDITOR)
            driver.find_element("name", "password").send_keys(PASSWORD)
            driver.find_element("id", "login").click()
            wait_for(lambda: driver.find_elements("css selector", "a.upcoming"), what="the newsroom page")
            cookie = next(c for c in driver.get_cookies() if c["name"] == "publisher_admin")
            assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
            upcoming = driver.find_element("css selector", "[data-campaign=endurance] a.upcoming")
            assert upcoming.text == "2026-W47"
            upcoming.click()
            wait_for(lambda: driver.find_elements("id", "approve"), what="the review page")
            for width in (375, 1280):
                set_viewport(driver, width)
                driver.refresh()
                wait_for(lambda: driver.find_elements("id", "approve"), what="the review page")
                assert horizontal_overflow(driver) <= 0, f"the review page scrolls sideways at {width} px"
            page = driver.page_source
            assert "Endurance Hebdo" in page and driver.find_elements("css selector", "iframe.mobile")
            assert driver.find_elements("css selector", "li.picked") and driver.find_elements("id", "text")
            # the framed email is the sample reader's copy of the rendering
            frame = driver.find_element("css selector", "iframe.desktop")
            driver.switch_to.frame(frame)
            assert "lecteur.exemple@example.org" in driver.page_source or "Endurance" in driver.page_source
            driver.switch_to.default_content()

            driver.find_element("id", "test").click()
            notice = _notice(driver, "test copy", "the test's answer")
            assert f"test copy of endurance/2026-W47 to {EDITOR}: sent" in notice
            test = wait_for(lambda: [r for r in srv.received if r.rcpt == EDITOR and "[TEST]" in str(r.message()["Subject"])],
                            what="the test copy")
            assert len(test) == 1

            driver.find_element("id", "approve").click()
            notice = _notice(driver, "approved", "the approval's answer")
            assert notice.startswith(f"approved by {EDITOR}")
            assert driver.find_elements("css selector", ".decision")
        assert _approvals(project) == [("endurance", "2026-W47", "approve", EDITOR)]
        approved = _query(project, "SELECT status, content_hash, rendered FROM editions WHERE edition_id='2026-W47'"
                                   " AND campaign='endurance'")
        assert approved[0][0] == "frozen"
        status = project.cli("--now", AFTER_APPROVAL, "status", "endurance", env=ENV).stdout
        assert f"approved 2026-W47 by {EDITOR} on 2026-11-22 12:00" in status

        proc = project.cli("--now", AFTER_APPROVAL, "run", env=ENV)  # the first wake-up after the approval
        assert proc.returncode == 0, proc.stderr
        assert "send endurance/2026-W47 on email: approved (slot 2026-11-23 08:00 CET)" in proc.stderr + proc.stdout
        got = {r.rcpt: r.message() for r in srv.received if r.rcpt in readers}
        assert sorted(got) == sorted(readers)
        # the bytes approved are the bytes sent: the frozen rendering did not change, and it is what readers got
        assert _query(project, "SELECT status, content_hash, rendered FROM editions WHERE edition_id='2026-W47'"
                               " AND campaign='endurance'") == approved
        html_part = got[readers[0]].get_body(("html",)).get_content()
        assert "Endurance Hebdo" in html_part
        assert _query(project, "SELECT count(*) FROM deliveries WHERE edition_key='endurance/2026-W47' AND channel='email'"
                               " AND state='sent'") == [(3,)]


def test_a_viewer_cannot_approve_and_requests_without_csrf_or_session_change_nothing(project):
    with SmtpServer() as srv:
        _newsroom(project, srv.port)
        with serving(project, "--now", BEFORE_SLOT, env=ENV) as (_, unsubscribe):
            admin = unsubscribe.rsplit("/", 1)[0] + "/admin"
            status, viewer = _login(admin, VIEWER)
            assert status == 303 and viewer
            page = _get(f"{admin}/endurance/2026-W47", viewer)[1]
            assert b'id="approve"' not in page and b"Endurance Hebdo" in page  # a viewer previews only
            refused = _post(f"{admin}/endurance/2026-W47/approve", {"csrf": _csrf(page)}, viewer)
            assert refused[0] == 403 and b"Only an editor" in refused[2]

            status, editor = _login(admin, EDITOR)
            token = _csrf(_get(f"{admin}/endurance/2026-W47", editor)[1])
            assert _post(f"{admin}/endurance/2026-W47/approve", {}, editor)[0] == 403  # no CSRF token
            assert _post(f"{admin}/endurance/2026-W47/approve", {"csrf": "forged"}, editor)[0] == 403
            assert _post(f"{admin}/endurance/2026-W47/approve", {"csrf": token})[0] == 403  # no session
            assert _post(f"{admin}/endurance/2026-W47/approve", {"csrf": token}, "publisher_admin=forged")[0] == 403
            assert _post(f"{admin}/endurance/2026-W47/test", {"csrf": token}, viewer)[0] == 403
            assert _approvals(project) == []
            assert _query(project, "SELECT count(*) FROM editions") == [(0,)]
            assert not [r for r in srv.received if "[TEST]" in str(r.message()["Subject"])]
            # the same editor with the token: held, then released, each recorded with who
            assert _post(f"{admin}/endurance/2026-W47/hold", {"csrf": token}, editor)[0] == 200
            assert _post(f"{admin}/endurance/2026-W47/release", {"csrf": token}, editor)[0] == 200
            assert _approvals(project) == [("endurance", "2026-W47", "hold", EDITOR), ("endurance", "2026-W47", "release", EDITOR)]
            # logging out ends the session: the same cookie opens nothing any more
            assert _post(f"{admin}/logout", {"csrf": token}, editor)[0] == 303
            assert _post(f"{admin}/endurance/2026-W47/hold", {"csrf": token}, editor)[0] == 403
            assert b'id="login"' in _get(f"{admin}/endurance/2026-W47", editor)[1]


def test_repeated_failed_logins_lock_the_user_out(project):
    with SmtpServer() as srv:
        _newsroom(project, srv.port)
        with serving(project, "--now", BEFORE_SLOT, env=ENV) as (_, unsubscribe):
            admin = unsubscribe.rsplit("/", 1)[0] + "/admin"
            for _ in range(5):
                assert _login(admin, EDITOR, "wrong password!") == (403, None)
            assert _login(admin, EDITOR) == (403, None)  # locked: even the right password is refused
            assert _login(admin, VIEWER)[0] == 303  # another user is not
        listed = project.cli("--now", BEFORE_SLOT, "users", "list", env=ENV).stdout
        assert f"{EDITOR}  editor, locked until 2026-11-22 11:15 UTC" in listed


ARCHIVE = "https://www.endurance-info.com/newsletter/archive/{campaign}/{edition}/"


def _sent_with_archive(project, srv: SmtpServer) -> list[str]:
    """endurance 2026-W47 sent to 3 readers, with [web].archive_url set (no approval needed)."""
    configure_live(project, srv.port)
    project.write_settings(project.settings.read_text(encoding="utf-8").replace(
        "[web]\n", f'[web]\narchive_url = "{ARCHIVE}"\n', 1))
    readers = _fetched_with_readers(project)
    proc = project.cli(*send_args(), env=ENV)
    assert proc.returncode == 0, proc.stderr
    proc = project.cli("users", "add", EDITOR, "--role", "editor", env={**ENV, "PUBLISHER_USER_PASSWORD": PASSWORD})
    assert proc.returncode == 0, proc.stderr
    return readers


def test_the_archive_of_a_sent_edition_holds_no_subscriber_data_and_the_email_links_to_it(project):
    with SmtpServer() as srv:
        readers = _sent_with_archive(project, srv)
        mail = next(r.message() for r in srv.received if r.rcpt == readers[0])
        web_url = ARCHIVE.format(campaign="endurance", edition="2026-W47")
        html_part = mail.get_body(("html",)).get_content()
        assert f'href="{web_url}"' in html_part and "Voir dans le navigateur" in html_part
        assert web_url in mail.get_body(("plain",)).get_content()
        with serving(project, env=ENV) as (_, unsubscribe):
            archive = unsubscribe.rsplit("/", 1)[0] + "/archive"
            status, page = request(f"{archive}/endurance/2026-W47/")
            assert status == 200 and "Endurance Hebdo".encode() in page
            text = page.decode()
            for i, reader in enumerate(readers):  # no address, no name, no token of anybody
                assert reader not in text and f"Lecteur {i}" not in text
            assert "?t=" not in text and "%%" not in text and "lecteur" not in text.lower()
            assert "https://www.endurance-info.com/newsletter/subscribe" in text
            index = request(f"{archive}/endurance/")[1].decode()
            assert 'href="2026-W47/"' in index
            status, feed = request(f"{archive}/endurance/feed.atom")
            assert status == 200 and feed.startswith(b"<?xml") and f"<id>{web_url}</id>".encode() in feed
            assert request(f"{archive}/endurance/2026-W46/")[0] == 404  # never sent: not archived
            assert request(f"{archive}/nope/")[0] == 404
            served = {p: request(f"{archive}/{p}".replace("index.html", ""))[1]
                      for p in ("index.html", "endurance/index.html", "endurance/2026-W47/index.html", "endurance/feed.atom")}
        out = project.root / "static-archive"
        proc = project.cli("archive", "--out", str(out), env=ENV)
        assert proc.returncode == 0, proc.stderr
        assert "archive: 1 edition(s)" in proc.stdout
        for path, body in served.items():  # the static copy is the served one, byte for byte
            assert (out / path).read_bytes() == body, path


@pytest.mark.browser
def test_the_dashboard_shows_the_figures_and_draws_its_charts_with_chart_js(project):
    require_chromium()
    with SmtpServer() as srv:
        readers = _sent_with_archive(project, srv)
        db = sqlite3.connect(store_path(project))  # one reader's mail bounced, as `publisher bounces` records it
        with db:
            db.execute("INSERT INTO feedback (source, email, edition_key, kind, created_at) VALUES"
                       " ('mail:1', ?, 'endurance/2026-W47', 'hard-bounce', '2026-11-23T09:00:00+00:00')", (readers[0],))
        db.close()
        with serving(project, "--now", NOW, env=ENV) as (_, unsubscribe), chromium() as driver:
            admin = unsubscribe.rsplit("/", 1)[0] + "/admin"
            driver.get(f"{admin}/dashboard")
            assert driver.current_url.endswith("/admin/login")  # behind the login
            driver.find_element("name", "email").send_keys(EDITOR)
            driver.find_element("name", "password").send_keys(PASSWORD)
            driver.find_element("id", "login").click()
            wait_for(lambda: driver.find_elements("css selector", "a.upcoming"), what="the newsroom page")
            for width in (375, 1280):
                set_viewport(driver, width)
                driver.get(f"{admin}/dashboard")
                wait_for(lambda: driver.execute_script("return document.body.dataset.charts") == "drawn", what="the charts")
                assert horizontal_overflow(driver) <= 0, f"the dashboard scrolls sideways at {width} px"
            row = driver.find_element("css selector", "[data-campaign=endurance] tr[data-edition='2026-W47']")
            cells = [td.text for td in row.find_elements("tag name", "td")]
            assert cells[:9] == ["2026-W47", "3", "2", "0", "0", "0", "1", "0", "0"]  # delivered: sent minus bounced
            drawn = driver.execute_script("return Chart.getChart('growth-endurance').data.datasets[0].data;")
            assert drawn == [3]
            assert driver.execute_script("return Chart.getChart('rates-endurance').data.datasets[0].data;") == [33.33]
            assert driver.execute_script("return Chart.getChart('rates-endurance').data.datasets.length;") == 2


# -- the pure due decision with approvals ------------------------------------------------------------

PARIS = ZoneInfo("Europe/Paris")


def _due(c: Campaign, now: datetime, state: EditionState | None = None, last_tick: datetime | None = None) -> list[Due]:
    states = {("endurance", "2026-W47"): state} if state else {}
    return [a for a in due([c], now, states, lateness=timedelta(hours=24), fetch_every=timedelta(hours=1),
                           last_fetch=now, last_tick=last_tick) if a.kind != "fetch"]


def test_due_holds_an_unapproved_edition_at_its_slot_sends_it_once_approved_and_never_skips_it_while_latest():
    c = Campaign(name="endurance", title="E", series=("wec",), channels=("email",), approval="required")
    slot_time = datetime(2026, 11, 23, 8, 1, tzinfo=PARIS)
    assert [(a.kind, a.edition_id) for a in _due(c, slot_time)] == [("hold", "2026-W47")]
    # two days later, past lateness: still held, not skipped (the editors were told; it waits for them)
    assert [a.kind for a in _due(c, slot_time + timedelta(days=2))] == ["hold"]
    approved = EditionState("frozen", approved=True)  # approving froze it
    assert [(a.kind, a.channels) for a in _due(c, slot_time + timedelta(days=2), approved)] == [("send", ("email",))]
    # before its slot, an approved edition waits for the slot
    assert [a for a in _due(c, slot_time - timedelta(days=1), approved) if a.edition_id == "2026-W47"] == []
    # held by an editor after approval: not sent until released; a campaign without approval holds the same way
    assert [a.kind for a in _due(c, slot_time, EditionState("frozen", approved=True, held=True))] == ["hold"]
    # sent by hand (`publisher send`) without approval: nothing left to hold
    assert _due(c, slot_time, EditionState("frozen", done_channels=frozenset({"email"}))) == []
    free = dataclasses.replace(c, approval="none")
    assert [a.kind for a in _due(free, slot_time, EditionState(held=True))] == ["hold"]
    assert [a.kind for a in _due(free, slot_time)] == ["send"]
    # once the next slot passed, the unapproved one is never sent by the scheduler; the new one is held
    later = [(a.kind, a.edition_id) for a in _due(c, slot_time + timedelta(days=7), last_tick=slot_time + timedelta(days=6))]
    assert later == [("hold", "2026-W48")]
    # woken late (nothing ran for days), a missed unapproved edition is recorded as skipped, never sent
    late = [(a.kind, a.edition_id, a.reason) for a in _due(c, slot_time + timedelta(days=7), last_tick=slot_time - timedelta(hours=1))]
    assert ("skip", "2026-W47", "missed: waiting for an editor's approval before the next slot") in late


def test_users_add_refuses_bad_input_with_one_line(project):
    bad = project.cli("users", "add", "not-an-address", "--role", "editor", env={"PUBLISHER_USER_PASSWORD": PASSWORD})
    assert bad.returncode != 0 and bad.stderr.count("\n") <= 2 and "users add:" in bad.stderr and "Traceback" not in bad.stderr
    short = project.cli("users", "add", EDITOR, env={"PUBLISHER_USER_PASSWORD": "short"})
    assert short.returncode != 0 and "at least 12 characters" in short.stderr and "Traceback" not in short.stderr
    none = project.cli("users", "add", EDITOR)  # no terminal, no variable: says how to give it
    assert none.returncode != 0 and "PUBLISHER_USER_PASSWORD" in none.stderr
    assert project.cli("users", "remove", EDITOR).returncode != 0
    ok = project.cli("users", "add", EDITOR, "--role", "editor", env={"PUBLISHER_USER_PASSWORD": PASSWORD})
    assert ok.returncode == 0 and f"added {EDITOR} (editor)" in ok.stdout
    stored = _query(project, "SELECT role, password FROM users")
    assert stored[0][0] == "editor" and stored[0][1].startswith("$argon2id$") and PASSWORD not in stored[0][1]
    assert project.cli("users", "list").stdout.strip() == f"{EDITOR}  editor"
    assert project.cli("users", "remove", EDITOR).returncode == 0
    assert _query(project, "SELECT count(*) FROM users") == [(0,)]


def test_the_review_page_shows_each_post_with_its_counted_length_in_thread_order_and_the_articles_left_out(project):
    ctx = Context.open(project.settings, now=datetime.fromisoformat(NOW))  # the sample settings: outbox, 4 channels
    try:
        assert all(r.ok for r in fetch(ctx))
    finally:
        ctx.close()
    assert project.cli("users", "add", VIEWER, env={"PUBLISHER_USER_PASSWORD": PASSWORD}).returncode == 0
    with serving(project, "--now", BEFORE_SLOT, env=ENV) as (_, unsubscribe):
        admin = unsubscribe.rsplit("/", 1)[0] + "/admin"
        assert request(f"{admin}/endurance/2026-W47")[1].find(b'id="approve"') < 0
        status, viewer = _login(admin, VIEWER)
        page = _get(f"{admin}/endurance/2026-W47", viewer)[1].decode()
        assert 'id="approve"' not in page and 'id="test"' not in page
        for network, limit in (("x", 280), ("mastodon", 500), ("bluesky", 300)):
            positions = re.findall(rf'data-network="{network}" data-position="(\d+)"', page)
            assert positions == [str(i) for i in range(len(positions))] and len(positions) == 4  # the lead and a thread of 3
            assert re.search(rf'data-network="{network}" data-position="0"><pre>.*?</pre>\s*<div class="muted"><span>\d+/{limit}</span>',
                             page, re.S)
        assert "in reply to post 1" in page
        assert 'class="picked"' in page and 'class="left-out"' in page and "matches none of the campaign" in page
        rules = [html.unescape(r) for r in re.findall(r'<li class="picked">.*?<span class="muted">series (.*?)</span>', page)]
        assert rules and all(re.fullmatch(r"[\w-]+ \((category|title prefix|keyword) '[^']+'\)(, .*)?", r) for r in rules), rules
        frame = _get(f"{admin}/endurance/2026-W47/email.html", viewer)[1].decode()
        assert "Endurance Hebdo" in frame and "%%" not in frame  # the sample reader's copy
        assert _get(f"{admin}/endurance/2026-W47/email.html", "publisher_admin=nobody")[0] == 404
        assert _get(f"{admin}/nope/2026-W47", viewer)[0] == 404 and _get(f"{admin}/endurance/not-an-edition", viewer)[0] == 404


def test_bad_newsroom_settings_fail_with_one_line_naming_the_file_and_key(project):
    text = project.settings.read_text(encoding="utf-8")
    for line, expected in (('lockout = "abc"', "settings.toml: [web].lockout must be a duration"),
                           ('archive_url = "ftp://x"', "settings.toml: [web].archive_url must be an http(s) URL"),
                           ("login_attempts = 0", "settings.toml: [web].login_attempts")):
        project.write_settings(text.replace("[web]\n", f"[web]\n{line}\n", 1))
        proc = project.cli("users", "list")
        assert proc.returncode == 2 and expected in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    project.write_settings(text)
    path = project.root / "campaigns" / "endurance.toml"
    path.write_text(path.read_text(encoding="utf-8").replace('thin_week = "skip"\n', 'thin_week = "skip"\napproval = "yes"\n'),
                    encoding="utf-8")
    proc = project.cli("status", "endurance")
    assert proc.returncode == 2 and "campaigns/endurance.toml: approval must be one of 'none', 'required', not 'yes'" in proc.stderr
