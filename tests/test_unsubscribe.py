"""One-click unsubscribe against the running `publisher serve`, with real HTTP requests."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from email import policy
from email.parser import BytesParser
from urllib.parse import urlsplit

import pytest

from email_project import ENV, SECRET, send_args, store_path, suppressed, write_subscribers
from publisher.cli import main
from publisher.tokens import Signer


def _request(url: str, data: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if data is not None:
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def served(project, monkeypatch):
    """Two subscribers, an outbox send (real links), and `publisher serve --port 0` running."""
    monkeypatch.setenv("PUBLISHER_UNSUBSCRIBE_SECRET", SECRET)
    write_subscribers(project, 2)
    assert main(["--settings", str(project.settings), "fetch"]) == 0
    assert main(["--settings", str(project.settings), *send_args()]) == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")} | ENV
    proc = subprocess.Popen([sys.executable, "-m", "publisher", "--settings", str(project.settings), "serve", "--port", "0"],
                            cwd=project.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert "serving unsubscribe links on http://127.0.0.1:" in line, proc.stderr.read() if proc.poll() is not None else line
    base = line.split()[4]  # http://127.0.0.1:PORT/newsletter/unsubscribe
    yield project, base
    proc.terminate()
    proc.wait(timeout=10)


def _link_from_outbox(project, address: str, base: str) -> str:
    eml = project.root / "var" / "outbox" / "endurance" / "2026-W47" / "email" / f"{address}.eml"
    msg = BytesParser(policy=policy.default).parsebytes(eml.read_bytes())
    link = str(msg["List-Unsubscribe"]).split(",")[0].strip("<> ")
    assert link.startswith("https://www.endurance-info.com/newsletter/unsubscribe?t=")
    assert link in msg.get_body(("plain",)).get_content()
    return base + "?" + urlsplit(link).query  # the public URL, served locally


def test_get_never_unsubscribes_post_does(served):
    project, base = served
    url = _link_from_outbox(project, "lecteur00000@example.org", base)
    status, body = _request(url)
    assert status == 200
    assert b'<form method="post"' in body and "Me désinscrire".encode() in body
    assert suppressed(project) == {}  # a scanner opening the link changes nothing
    status, body = _request(url, b"List-Unsubscribe=One-Click")  # RFC 8058, as a mail client sends it
    assert status == 200
    assert "ne recevra plus".encode() in body
    assert suppressed(project) == {"lecteur00000@example.org": "unsubscribed"}
    status, body = _request(url)  # the link again: says it is done, still no button
    assert status == 200 and b"<form" not in body


def test_bad_tokens_all_get_the_same_answer(served):
    project, base = served
    good = _link_from_outbox(project, "lecteur00000@example.org", base).split("?t=")[1]
    other = Signer(SECRET.encode()).token("lecteur00001@example.org")
    payload, mac = good.split(".")
    altered_mac = mac[:-2] + ("AA" if not mac.endswith("AA") else "BB")
    tokens = {
        "garbage": "abc",
        "altered mac": f"{payload}.{altered_mac}",
        "other subscriber's mac": f"{payload}.{other.split('.')[1]}",
        "altered address": f"{other.split('.')[0]}.{mac}",
        "other secret": Signer(b"another-secret-0123456789").token("lecteur00000@example.org"),
        "empty": "",
    }
    answers = {}
    for label, token in tokens.items():
        for data in (None, b"List-Unsubscribe=One-Click"):
            answers[(label, data is None)] = _request(f"{base}?t={token}", data)
    assert len(set(answers.values())) == 1, answers.keys()
    status, body = next(iter(answers.values()))
    assert status == 400 and "pas valide".encode() in body
    assert suppressed(project) == {}


def test_preferences_page_picks_series(served):
    project, base = served
    token = Signer(SECRET.encode()).token("lecteur00001@example.org")
    status, body = _request(f"{base}/preferences?t={token}")
    assert status == 200
    assert b'value="wec" checked' in body and b'value="gt">' in body
    status, body = _request(f"{base}/preferences?t={token}", b"list=gt&list=elms")
    assert status == 200
    db = sqlite3.connect(store_path(project))
    lists = sorted(r[0] for r in db.execute("SELECT list FROM subscriptions x JOIN subscribers s ON s.id = x.subscriber_id"
                                            " WHERE s.email = 'lecteur00001@example.org'"))
    db.close()
    assert lists == ["elms", "gt"]
    assert suppressed(project) == {}
