"""`publisher preview` as a user runs it: the bundle it writes, and everything it must never touch."""

from __future__ import annotations

import email
import email.policy
import json
import os
import socket
import sqlite3
import threading

NOW = "2026-11-23T09:00:00+01:00"
UMASK = os.umask(0o022)
os.umask(UMASK)
CAMPAIGNS = ("endurance", "gt", "imsa", "rallycross")
SAMPLE = "samples/feeds/endurance-info-2026-w46-w47.xml"


def _rows(project, table):
    db = project.root / "var" / "publisher.sqlite3"
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def test_preview_writes_the_bundle_and_nothing_else(project):
    project.cli("--now", NOW, "fetch", check=True)
    proc = project.cli("--now", NOW, "preview", check=True)
    bundle = project.root / "var" / "preview"
    index = (bundle / "index.html").read_text(encoding="utf-8")
    for name in CAMPAIGNS:
        folder = bundle / name / "2026-W47"
        for f in ("index.html", "email.html", "sample.html", "email.txt", "email.eml", "posts.json"):
            assert (folder / f).stat().st_size > 0, folder / f
            # mode from the umask (0644 under the usual 022), not mkstemp's 0600: the bundle is shared for review
            assert (folder / f).stat().st_mode & 0o777 == 0o666 & ~UMASK, folder / f
        assert f'href="{name}/2026-W47/index.html"' in index
        assert f"{name} 2026-W47:" in proc.stdout
        page = (folder / "index.html").read_text(encoding="utf-8")
        assert 'class="desktop" src="sample.html"' in page and 'class="mobile" src="sample.html"' in page
        posts = json.loads((folder / "posts.json").read_text(encoding="utf-8"))
        assert set(posts) == {"x", "mastodon", "bluesky"}
        for network, items in posts.items():
            assert [p["position"] for p in items] == list(range(len(items)))
            for p in items:
                assert p["length"] <= p["limit"]
                assert f'{p["length"]}/{p["limit"]}' in page
    assert "semaine du 16 au 22 novembre 2026" in index
    # Preview never freezes an edition, never writes the ledger, never touches subscribers or the outbox.
    for table in ("deliveries", "editions", "subscribers"):
        assert _rows(project, table) == 0, table
    assert not (project.root / "var" / "outbox").exists()


def test_eml_is_the_rendered_edition(project):
    project.cli("--now", NOW, "fetch", check=True)
    project.cli("--now", NOW, "preview", "--campaign", "endurance", check=True)
    folder = project.root / "var" / "preview" / "endurance" / "2026-W47"
    msg = email.message_from_bytes((folder / "email.eml").read_bytes(), policy=email.policy.default)
    assert msg["Subject"] == "Endurance Hebdo – semaine du 16 au 22 novembre 2026"
    assert msg.get_content_type() == "multipart/alternative"
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    assert "%%UNSUBSCRIBE_URL%%" not in html  # the sample recipient's link is filled in
    stored = (folder / "email.html").read_text(encoding="utf-8")
    assert stored.split("<body")[0] == html.replace("\r\n", "\n").split("<body")[0]
    assert "À LA UNE" in text


def test_named_campaign_and_edition_into_out_dir(project, tmp_path):
    project.cli("--now", NOW, "fetch", check=True)
    out = tmp_path / "bundle"
    proc = project.cli("--now", NOW, "preview", "--campaign", "gt", "--edition", "2026-W46", "--out", str(out), check=True)
    assert (out / "gt" / "2026-W46" / "email.html").exists()
    assert not (out / "endurance").exists()
    assert "gt 2026-W46" in proc.stdout
    assert not (project.root / "var" / "preview").exists()


def test_thin_weeks_are_listed_with_the_reason(project):
    project.cli("--now", NOW, "fetch", check=True)
    proc = project.cli("--now", NOW, "preview", "--edition", "2026-W40", check=True)
    index = (project.root / "var" / "preview" / "index.html").read_text(encoding="utf-8")
    assert index.count("thin week: 0 article(s)") == len(CAMPAIGNS)
    assert "endurance 2026-W40: skipped (thin week" in proc.stdout
    assert _rows(project, "editions") == 0  # a preview does not record the skip either


def test_empty_store_says_to_fetch_first(project):
    proc = project.cli("--now", NOW, "preview")
    assert proc.returncode == 3
    assert "has no articles yet" in proc.stderr and "publisher fetch" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_feed_option_replaces_the_store_for_this_run(project):
    proc = project.cli("--now", NOW, "preview", "--feed", str(project.root / SAMPLE), check=True)
    assert "endurance 2026-W47: " in proc.stdout and "articles" in proc.stdout
    assert "rallycross 2026-W47: skipped" in proc.stdout  # only the endurance feed was read
    db = project.root / "var" / "publisher.sqlite3"
    assert not db.exists() or _rows(project, "articles") == 0  # read, never stored


def test_strict_fails_on_lint_problems(project):
    (project.root / "templates").mkdir(exist_ok=True)
    (project.root / "templates" / "email.html").write_text(
        '{% extends "default:email.html" %}{% block intro %}<tr><td><img src="https://x.org/pub.png">'
        '<div style="display:flex">{{ intro }}</div></td></tr>{% endblock %}', encoding="utf-8")
    relaxed = project.cli("--now", NOW, "preview", "--campaign", "gt", "--feed", SAMPLE)
    assert relaxed.returncode == 0 and "lint problem(s)" in relaxed.stdout
    page = (project.root / "var" / "preview" / "gt" / "2026-W47" / "index.html").read_text(encoding="utf-8")
    assert "img-no-width" in page and "display:flex" in page
    strict = project.cli("--now", NOW, "preview", "--campaign", "gt", "--feed", SAMPLE, "--strict")
    assert strict.returncode == 6
    assert "lint problem(s)" in strict.stderr and "Traceback" not in strict.stderr


class _Listener:
    """A TCP port that counts the connections made to it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()


def test_preview_never_connects_to_the_mail_server(project):
    listener = _Listener()
    text = project.settings.read_text(encoding="utf-8")
    text = text.replace('delivery = "outbox"', 'delivery = "live"').replace('host = "localhost"', 'host = "127.0.0.1"')
    project.write_settings(text.replace("port = 587", f"port = {listener.port}"))
    project.cli("--now", NOW, "fetch", check=True)
    project.cli("--now", NOW, "preview", check=True, env={"PUBLISHER_SMTP_PASSWORD": "secret-value"})
    assert (project.root / "var" / "preview" / "index.html").exists()
    listener.sock.close()
    assert listener.accepted == 0
    assert _rows(project, "deliveries") == 0
