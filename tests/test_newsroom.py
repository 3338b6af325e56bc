"""The newsroom's web face (issue 12), tested as an editor would: a real `publisher serve`, `publisher run` at the
slot, aiosmtpd, headless Chromium; and a viewer, forged requests and the public archive."""

from __future__ import annotations

import http.client
import re
from datetime import datetime
from urllib.parse import urlencode, urlsplit

import pytest

from publisher.app import Context
from publisher.pipeline import fetch
from support.browser import chromium, horizontal_overflow, require_chromium, set_viewport
from support.email_project import ENV, NOW, _query, configure_live, write_subscribers
from support.smtp_servers import SmtpServer
from support.web import request, serving, wait_for

EDITOR, VIEWER = "redaction@endurance-info.com", "stagiaire@endurance-info.com"
PASSWORD = "correct horse battery staple"
BEFORE_SLOT = "2026-11-22T12:00:00+01:00"  # Sunday: 2026-W47 of endurance is the upcoming edition (slot Monday 08:00)
AT_SLOT, AFTER_APPROVAL = "2026-11-23T08:01:00+01:00", "2026-11-23T08:30:00+01:00"


def _newsroom(project, port: int) -> list[str]:
    """Live mail to the local server, endurance needing approval, the feeds fetched, 3 subscribers, 2 users."""
    configure_live(project, port)
    path = project.root / "campaigns" / "endurance.toml"
    path.write_text(path.read_text(encoding="utf-8").replace('thin_week = "skip"\n', 'thin_week = "skip"\napproval = "required"\n'),
                    encoding="utf-8")
    ctx = Context.open(project.settings, now=datetime.fromisoformat(NOW))
    try:
        assert all(r.ok for r in fetch(ctx))
    finally:
        ctx.close()
    readers = write_subscribers(project, 3)
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
            notice = wait_for(lambda: driver.find_elements("id", "notice"), what="the test's answer")[0].text
            assert f"test copy of endurance/2026-W47 to {EDITOR}: sent" in notice
            test = wait_for(lambda: [r for r in srv.received if r.rcpt == EDITOR and "[TEST]" in str(r.message()["Subject"])],
                            what="the test copy")
            assert len(test) == 1

            driver.find_element("id", "approve").click()
            notice = wait_for(lambda: driver.find_elements("id", "notice"), what="the approval's answer")[0].text
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
