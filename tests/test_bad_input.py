"""A hostile-but-ordinary user: bad settings, campaigns, templates, CLI values, files and relays.

Every case runs the real command in a subprocess and asserts the exit code, the one line that says
what was wrong and where (with the next command), that no traceback is shown, and that nothing the
user had is lost (a store that is not ours is left byte for byte as it was).
"""

from __future__ import annotations

import base64
import re
import socket

import pytest
from aiosmtpd.smtp import AuthResult

from publisher.channels.email.security import scrub
from support.email_project import ENV, NOW, prepared, send_args
from support.smtp_servers import _Controller
from support.user_errors import edit, error_line

FEED = "samples/feeds/endurance-info-2026-w46-w47.xml"


# -- settings.toml: values a type cannot rule out -------------------------------------------------------


@pytest.mark.parametrize(("pattern", "replacement", "expected"), [
    (r"^connections = 4$", "connections = 0", "[smtp].connections must be from 1 to 100 (parallel SMTP connections), not 0"),
    (r"^connections = 4$", "connections = 101", "[smtp].connections must be from 1 to 100 (parallel SMTP connections), not 101"),
    (r"^connections = 4$", "connections = 4\nmax_attempts = 0", "[smtp].max_attempts must be at least 1, not 0"),
    (r"^connections = 4$", "connections = 4\nrate_per_second = -5", "[smtp].rate_per_second must be at least 0 (0 = no limit), not -5.0"),
    (r"^connections = 4$", "connections = 4\ntimeout = 0", "[smtp].timeout must be at least 0.1 (seconds), not 0.0"),
    (r"^port = 587$", "port = 70000", "[smtp].port must be a port number from 1 to 65535, not 70000"),
    (r"^max_bytes = .*$", "max_bytes = 0", "[feeds].max_bytes must be at least 1024"),
    (r"^timeout = 20$", "timeout = -1", "[feeds].timeout must be at least 0.1 (seconds), not -1.0"),
    (r"^port = 8025$", "port = -1", "[web].port must be a port number from 0 to 65535, not -1"),
    (r"^port = 8025$", "port = 8025\ntimeout = 0", "[web].timeout must be from 0.1 to 300 (seconds), not 0.0"),
    (r"^port = 8025$", "port = 8025\nworkers = 10000", "[web].workers must be from 1 to 256 (requests at once), not 10000"),
    (r'^tick = .*$', 'tick = "0s"', "[schedule].tick must be longer than 0s, not '0s'"),
    (r"\Z", "\n[mastodon]\ntimeout = 0\n", "[mastodon].timeout must be at least 0.1 (seconds), not 0.0"),
    # a URL without its scheme, a host with one: refused when read, not at the first post or message
    (r"\Z", '\n[mastodon]\ninstance_url = "mastodon.social"\n',
     "[mastodon].instance_url must be an http(s) URL like 'https://piaille.fr', not 'mastodon.social'"),
    (r"\Z", '\n[x]\napi_url = "api.twitter.com"\n', "[x].api_url must be an http(s) URL like 'https://api.twitter.com'"),
    (r"\Z", '\n[x]\nupload_url = "ftp://upload.twitter.com"\n', "[x].upload_url must be an http(s) URL"),
    (r"\Z", '\n[bluesky]\nservice_url = "bsky.social"\n', "[bluesky].service_url must be an http(s) URL like 'https://bsky.social'"),
    (r'^host = "localhost"$', 'host = "smtp://mail.example.org"',
     "[smtp].host must be a host name or IP address like 'smtp.example.org' (no scheme, port or path), not 'smtp://mail.example.org'"),
    (r'^host = "localhost"$', 'host = "mail.example.org:2525"', "[smtp].host must be a host name or IP address"),
    (r"^connections = 4$", r'connections = 4\nhelo_name = "news.example.org\\r\\nRSET"', "[smtp].helo_name must be a host name or IP address"),
])
def test_out_of_range_setting_names_file_and_key(project, pattern, replacement, expected):
    edit(project.settings, pattern, replacement)
    proc = project.cli("status")
    assert proc.returncode == 2
    line = error_line(proc)
    assert f"settings.toml: {expected}" in line
    assert "rerun the same command" in line or "[schedule]" in expected


@pytest.mark.parametrize(("host", "helo_name"), [("mail.example.org", "news.example.org"), ("localhost", "localhost"),
                                               ("127.0.0.1", "[192.0.2.1]"), ("::1", "[IPv6:2001:db8::1]"),
                                               ("relay_1.internal", "mx1")])
def test_host_names_and_addresses_are_accepted(project, host, helo_name):
    edit(project.settings, r'^host = "localhost"$', f'host = "{host}"')
    edit(project.settings, r"^connections = 4$", f'connections = 100\nhelo_name = "{helo_name}"')
    proc = project.cli("status")
    assert proc.returncode == 0, proc.stderr


def test_missing_ca_file_names_the_resolved_path(project, tmp_path):
    edit(project.settings, r"^connections = 4$", 'connections = 4\nca_file = "certs/relay-ca.pem"')
    proc = project.cli("status", env={"HOME": str(tmp_path)})
    assert proc.returncode == 2
    line = error_line(proc)
    assert (f"settings.toml: [smtp].ca_file {project.root / 'certs' / 'relay-ca.pem'} cannot be read (No such file or directory);"
            f" relative paths start from the folder of {project.settings}") in line
    (project.root / "certs" / "relay-ca.pem").mkdir(parents=True)  # a folder where the file should be
    assert f"{project.root / 'certs' / 'relay-ca.pem'} cannot be read (Is a directory)" in error_line(project.cli("status"))
    edit(project.settings, r"^ca_file = .*$", 'ca_file = "~/ca.pem"')  # `~` is the user's home, as in a shell
    assert f"[smtp].ca_file {tmp_path / 'ca.pem'} cannot be read" in error_line(project.cli("status", env={"HOME": str(tmp_path)}))


def test_settings_not_utf8_and_settings_folder(project):
    project.settings.write_bytes(project.settings.read_bytes().replace(b"Endurance-Info", "Endurance-Infé".encode("latin-1"), 1))
    proc = project.cli("status")
    assert proc.returncode == 2
    assert "settings.toml: not UTF-8 text (byte 0xe9 at offset" in error_line(proc)
    assert "save it as UTF-8" in error_line(proc)

    (project.root / "folder.toml").mkdir()
    proc = project.cli("--settings", str(project.root / "folder.toml"), "status")
    assert proc.returncode == 2
    assert "folder.toml: is a folder, not a TOML file; pass --settings PATH/settings.toml" in error_line(proc)


def test_store_that_is_not_sqlite_is_left_alone(project):
    store = project.root / "var" / "publisher.sqlite3"
    store.parent.mkdir()
    garbage = bytes(range(256)) * 20
    store.write_bytes(garbage)
    proc = project.cli("fetch")
    assert proc.returncode == 2
    line = error_line(proc)
    assert f"store {store}: not an SQLite database (file is not a database); it was left as it is" in line
    assert "rerun 'publisher fetch'" in line
    assert store.read_bytes() == garbage
    assert sorted(p.name for p in store.parent.iterdir()) == ["publisher.sqlite3"]  # no -wal/-shm beside it


def test_store_path_is_a_folder(project):
    (project.root / "var" / "publisher.sqlite3").mkdir(parents=True)
    proc = project.cli("status")
    assert proc.returncode == 2
    assert "publisher.sqlite3: is a folder, not an SQLite file; set [publisher].store" in error_line(proc)


def test_missing_campaigns_folder_is_an_error_not_nothing_due(project):
    edit(project.settings, r'^campaigns = "campaigns"$', 'campaigns = "campagnes"')
    proc = project.cli("--now", NOW, "send")
    assert proc.returncode == 2
    line = error_line(proc)
    assert "[publisher].campaigns: folder 'campagnes' not found" in line
    assert "one .toml file per campaign" in line


# -- campaigns --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("pattern", "replacement", "expected"), [
    (r"^title = ", 'name = "../../elsewhere"\ntitle = ', "name '../../elsewhere' must be letters, digits, '-' or '_'"),
    (r"^min_articles = 2$", "min_articles = -1", "min_articles must be 0 or more, not -1"),
    (r"^max_articles = 12$", "max_articles = 0", "max_articles must be at least 1 and at least min_articles (2), not 0"),
    (r"^thread_top = 3$", "thread_top = -2", "social.thread_top must be at least 0, not -2"),
    (r"^title = ", 'templates = "does/not/exist"\ntitle = ', "templates: folder 'does/not/exist' not found"),
    (r"^thread_top = 3$", 'thread_top = 3\nweb_version_url = "www.endurance-info.com/newsletter/{campaign}"',
     "social.web_version_url must be an http(s) URL like 'https://example.org/newsletter/{campaign}/{edition}'"),
])
def test_bad_campaign_value(project, pattern, replacement, expected):
    edit(project.root / "campaigns" / "endurance.toml", pattern, replacement)
    proc = project.cli("--now", NOW, "preview", "--feed", FEED)
    assert proc.returncode == 2
    assert f"campaigns/endurance.toml: {expected}" in error_line(proc)
    assert not (project.root / "var" / "preview").exists()


# -- templates --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "source", "expected"), [
    ("email.html", "<p>\n\n{{ nope }}</p>\n", "templates/email.html line 3: 'nope' is undefined"),
    ("email.txt", "{{ 1 / 0 }}\n", "templates/email.txt line 1: ZeroDivisionError: division by zero"),
    ("email.html", '{% extends "email.html" %}\n', "templates/email.html: extends or includes itself"),
    ("email.html", '{% extends "default:nonexistent.html" %}\n', "template 'default:nonexistent.html' not found"),
    ("posts/x.txt", "{{ item.nope }}\n", "templates/posts/x.txt line 1: "),
])
def test_template_mistake_names_file_and_line(project, name, source, expected):
    path = project.root / "templates" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source, encoding="utf-8")
    proc = project.cli("--now", NOW, "preview", "--campaign", "endurance", "--feed", FEED)
    assert proc.returncode == 2
    line = error_line(proc)
    assert expected in line
    assert "not found" in expected or "rerun 'publisher preview --campaign endurance'" in line


def test_template_in_latin1(project):
    (project.root / "templates" / "email.html").write_bytes("<p>Été</p>".encode("latin-1"))
    proc = project.cli("--now", NOW, "preview", "--campaign", "endurance", "--feed", FEED)
    assert proc.returncode == 2
    assert "templates/email.html: not UTF-8 text (byte 0xc9 at offset 3); save it as UTF-8" in error_line(proc)


def test_subject_that_raises(project):
    edit(project.root / "campaigns" / "endurance.toml", r"^subject = .*$", 'subject = "{{ campaign.title + 1 }}"')
    proc = project.cli("--now", NOW, "preview", "--campaign", "endurance", "--feed", FEED)
    assert proc.returncode == 2
    assert "campaigns/endurance.toml: subject: TypeError: " in error_line(proc)


# -- CLI values and user files ----------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["a-file", "a-file/below", "/proc/forbidden"])
def test_preview_out_that_cannot_be_a_folder(project, where):
    (project.root / "a-file").write_text("keep me", encoding="utf-8")
    proc = project.cli("--now", NOW, "preview", "--feed", FEED, "--out", where)
    assert proc.returncode == 2
    line = error_line(proc)
    assert "preview: " in line and f"{where} (--out)" in line
    assert "pass --out DIR with a folder you can write" in line
    assert (project.root / "a-file").read_text(encoding="utf-8") == "keep me"


def test_edition_out_of_range_says_which_weeks_exist(project):
    proc = project.cli("status", "--edition", "2025-W53")
    assert proc.returncode == 2
    assert "--edition: 2025 has no week 53 (its weeks are W01 to W52); write it as YEAR-Www" in error_line(proc)


def test_serve_port_out_of_range(project):
    proc = project.cli("serve", "--port", "70000", env=ENV)
    assert proc.returncode == 2
    assert "serve --port must be a port number from 0 to 65535, not 70000" in error_line(proc)


def test_send_to_a_bad_address_sends_nothing(project):
    proc = project.cli("--now", NOW, "send", "endurance", "--to", "not-an-address")
    assert proc.returncode == 2
    line = error_line(proc)
    assert "--to not-an-address: 'not-an-address' is not an address" in line
    assert "rerun 'publisher send endurance --to you@example.org'" in line
    assert not (project.root / "var" / "outbox").exists()


def test_subscribers_import_of_a_binary_file(project):
    (project.root / "list.xlsx").write_bytes(b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00")
    proc = project.cli("subscribers", "import", "list.xlsx")
    assert proc.returncode == 2
    line = error_line(proc)
    assert "list.xlsx: not a CSV text file (it holds binary data; a spreadsheet file?)" in line
    assert "rerun 'publisher subscribers import list.xlsx'" in line


def test_subscribers_import_of_a_header_only_file_says_so(project):
    (project.root / "empty.csv").write_text("email,name,series,locale\n", encoding="utf-8")
    proc = project.cli("subscribers", "import", "empty.csv")
    assert proc.returncode == 0
    assert "empty.csv: no subscriber rows after the header; nothing was imported" in proc.stderr


def test_subscribers_export_to_a_folder(project):
    (project.root / "out").mkdir()
    proc = project.cli("subscribers", "export", "--out", "out")
    assert proc.returncode == 2
    assert "subscribers export: cannot write out (Is a directory); pass --out with a file path" in error_line(proc)


# -- relays that refuse, and secrets ----------------------------------------------------------------------


PASSWORD = "Pw-s3cr3t-4242-never-shown"


class _EchoingRefusal:
    """A relay that refuses every login and echoes what it received, password included."""

    def __call__(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        echo = f"{auth_data.login.decode()} {auth_data.password.decode()}"
        return AuthResult(success=False, handled=False, message=f"535 5.7.8 bad credentials: {echo}")


class _Sink:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_smtp_password_echoed_by_the_relay_never_shows(project):
    controller = _Controller(_Sink(), hostname="127.0.0.1", port=0, authenticator=_EchoingRefusal(),
                            auth_require_tls=False, auth_required=True)
    controller.start()
    try:
        prepared(project, controller.port, 3, username="newsletter")
        proc = project.cli(*send_args(), env={**ENV, "PUBLISHER_SMTP_PASSWORD": PASSWORD})
    finally:
        controller.stop()
    assert proc.returncode == 4
    assert "email: login refused by 127.0.0.1:" in proc.stdout
    assert "bad credentials: newsletter ***" in proc.stdout
    assert PASSWORD not in proc.stdout + proc.stderr
    for path in (project.root / "var").rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path


def test_scrub_removes_the_auth_encodings_of_the_password():
    plain = base64.b64encode(b"\0user\0" + PASSWORD.encode()).decode()
    login = base64.b64encode(PASSWORD.encode()).decode()
    text = scrub(f"535 got {plain} and {login} and {PASSWORD}", "user", PASSWORD)
    assert text == "535 got *** and *** and ***"
    assert scrub("nothing to hide", "user", None) == "nothing to hide"


def test_refused_connection_says_why_mail_is_pending(project):
    with socket.socket() as closed:  # bound, never listening: every connect is refused
        closed.bind(("127.0.0.1", 0))
        prepared(project, closed.getsockname()[1], 3, retry_wait=0)
        proc = project.cli(*send_args(), env=ENV)
    assert proc.returncode == 4
    assert "Traceback" not in proc.stderr
    assert "email endurance/2026-W47: 0 sent, 0 already sent, 3 pending" in proc.stdout
    assert re.search(r"email endurance/2026-W47: 3 message\(s\) left for a later run \(last reply: cannot connect to "
                     r"127\.0\.0\.1:\d+: ConnectionRefusedError: .*; rerun 'publisher send endurance' after ", proc.stdout)


def test_subscribers_import_of_excel_unicode_text(project):
    """Excel's "Unicode text" export is UTF-16 with a BOM and tabs: it is text, not binary data."""
    (project.root / "excel.txt").write_bytes("email\tname\tseries\tlocale\nzoe@example.org\tZoé\twec\tfr\n".encode("utf-16"))
    proc = project.cli("subscribers", "import", "excel.txt")
    assert proc.returncode == 0, proc.stderr
    assert "excel.txt: 1 new, 0 updated, 0 unchanged, 0 rejected" in proc.stdout
    assert "zoe@example.org,Zoé,wec,fr" in project.cli("subscribers", "export").stdout


@pytest.mark.parametrize(("pattern", "replacement", "expected"), [
    (r"^from = .*$", 'from = "not an address"', "[email].from must be an address like 'Name <newsletter@example.org>'"),
    (r"^from = .*$", r'from = "A <a@example.org>\\r\\nBcc: b@example.org"', "[email].from must be an address"),
    (r"^reply_to = .*$", 'reply_to = "@@"', "[email].reply_to must be an address"),
    (r"^unsubscribe_mailto = .*$", 'unsubscribe_mailto = "désabonner@example.org"', "[email].unsubscribe_mailto must be an address"),
    (r"^unsubscribe_url = .*$", 'unsubscribe_url = "javascript:alert(1)"', "[email].unsubscribe_url must be an http(s) URL"),
    (r"^site_url = .*$", 'site_url = "www.example.org"', "[publisher].site_url must be an http(s) URL"),
])
def test_header_values_in_settings_are_checked_before_any_mail_is_built(project, pattern, replacement, expected):
    edit(project.settings, pattern, replacement)
    proc = project.cli("--now", NOW, "send", "endurance", "--to", "me@example.org")
    assert proc.returncode == 2
    assert f"settings.toml: {expected}" in error_line(proc)
    assert not (project.root / "var" / "outbox").exists()
