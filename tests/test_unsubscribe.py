"""One-click unsubscribe and preferences against the running `publisher serve`, with real HTTP requests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import select
import socket
import sqlite3
import subprocess
import threading
import time
from email import policy
from email.parser import BytesParser
from urllib.parse import urlsplit

import pytest

from publisher.cli import main
from publisher.web.tokens import Signer
from support.email_project import SECRET, send_args, store_path, suppressed, write_subscribers
from support.user_errors import edit
from support.web import request, serving


def _request(url: str, data: bytes | None = None, timeout: float = 10) -> tuple[int, bytes]:
    return request(url, data, timeout)


def lists_of(project, address: str) -> list[str]:
    db = sqlite3.connect(store_path(project))
    try:
        return sorted(r[0] for r in db.execute("SELECT list FROM subscriptions x JOIN subscribers s ON s.id = x.subscriber_id"
                                               " WHERE s.email = ?", (address,)))
    finally:
        db.close()


@pytest.fixture
def served(project, monkeypatch):
    """Two subscribers, an outbox send (real links), and `publisher serve --port 0` running."""
    monkeypatch.setenv("PUBLISHER_UNSUBSCRIBE_SECRET", SECRET)
    write_subscribers(project, 2)
    assert main(["--settings", str(project.settings), "fetch"]) == 0
    assert main(["--settings", str(project.settings), *send_args()]) == 0
    with serving(project) as (_, base):
        yield project, base


def _link_from_outbox(project, address: str, base: str) -> str:
    eml = project.root / "var" / "outbox" / "endurance" / "2026-W47" / "email" / f"{address}.eml"
    msg = BytesParser(policy=policy.default).parsebytes(eml.read_bytes())
    link = str(msg["List-Unsubscribe"]).split(",")[0].strip("<> ")
    assert link.startswith("https://www.endurance-info.com/newsletter/unsubscribe?t=")
    assert link in msg.get_body(("plain",)).get_content()
    return base + "?" + urlsplit(link).query  # the public URL, served locally


def test_get_never_unsubscribes_post_leaves_that_campaign_only(served):
    project, base = served
    url = _link_from_outbox(project, "lecteur00000@example.org", base)
    assert "lecteur" not in url and "bGVjdGV1c" not in url  # opaque: neither the address nor its base64
    db = sqlite3.connect(store_path(project))
    db.execute("INSERT INTO subscriptions (subscriber_id, list) SELECT id, 'gt' FROM subscribers"
               " WHERE email = 'lecteur00000@example.org'")  # also on the GT letter
    db.commit()
    db.close()
    status, body = _request(url)
    assert status == 200
    assert b'<form method="post"' in body and "Ne plus recevoir « Endurance Hebdo »".encode() in body
    assert lists_of(project, "lecteur00000@example.org") == ["gt", "wec"]  # a scanner opening the link changes nothing
    status, body = _request(url, b"List-Unsubscribe=One-Click")  # RFC 8058, as a mail client sends it
    assert status == 200
    assert "vous ne recevrez plus cette lettre".encode() in body
    assert lists_of(project, "lecteur00000@example.org") == ["gt"]  # the endurance series gone, GT kept
    assert suppressed(project) == {}  # not unsubscribed from everything
    status, body = _request(url)  # the link again: says it is done, no button, the preferences link
    assert status == 200 and b'name="List-Unsubscribe"' not in body and b"/preferences?t=" in body
    assert "déjà désinscrit".encode() in body
    db = sqlite3.connect(store_path(project))
    assert db.execute("SELECT kind, lists, source FROM consents WHERE email = 'lecteur00000@example.org'").fetchall() == [
        ("opt-out", "asian-lms;elms;endurance;le-mans;wec", "one-click")]
    db.close()


def test_bad_tokens_all_get_the_same_answer(served):
    project, base = served
    good = _link_from_outbox(project, "lecteur00000@example.org", base).split("?t=")[1]
    other = Signer(SECRET.encode()).link("lecteur00001@example.org", "endurance")
    sealed, lst, mac = good.split(".")
    altered_mac = mac[:-2] + ("AA" if not mac.endswith("AA") else "BB")
    tokens = {
        "garbage": "abc",
        "altered mac": f"{sealed}.{lst}.{altered_mac}",
        "other subscriber's mac": f"{sealed}.{lst}.{other.split('.')[2]}",
        "other subscriber's address": f"{other.split('.')[0]}.{lst}.{mac}",
        "altered list": f"{sealed}.Z3Q.{mac}",
        "other secret": Signer(b"another-secret-0123456789").link("lecteur00000@example.org", "endurance"),
        "forged old-style token": "bGVjdGV1cjAwMDAwQGV4YW1wbGUub3Jn.AAAA",
        "empty": "",
    }
    answers = {}
    for label, token in tokens.items():
        for data in (None, b"List-Unsubscribe=One-Click"):
            answers[(label, data is None)] = _request(f"{base}?t={token}", data)
    assert len(set(answers.values())) == 1, answers.keys()
    status, body = next(iter(answers.values()))
    assert status == 400 and "pas valide".encode() in body
    assert suppressed(project) == {} and lists_of(project, "lecteur00000@example.org") == ["wec"]


def test_links_sent_before_opaque_tokens_still_unsubscribe_from_everything(served):
    project, base = served
    old = _legacy_token(SECRET, "lecteur00001@example.org")
    status, body = _request(f"{base}?t={old}", b"List-Unsubscribe=One-Click")
    assert status == 200
    assert suppressed(project) == {"lecteur00001@example.org": "unsubscribed"}


def _legacy_token(secret: str, address: str) -> str:
    """A token as versions before opaque links made them: base64url(address).base64url(HMAC)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    mac = hmac.new(secret.encode(), b"publisher-unsubscribe-v1\x00" + address.encode(), hashlib.sha256).digest()
    return f"{b64(address.encode())}.{b64(mac)}"


def test_preferences_page_picks_series_and_unsubscribes_from_all(served):
    project, base = served
    token = Signer(SECRET.encode()).link("lecteur00001@example.org")
    status, body = _request(f"{base}/preferences?t={token}")
    assert status == 200
    assert b'value="wec" checked' in body and b'value="gt">' in body
    status, body = _request(f"{base}/preferences?t={token}", b"action=save&list=gt&list=elms")
    assert status == 200 and "Préférences enregistrées".encode() in body
    assert lists_of(project, "lecteur00001@example.org") == ["elms", "gt"]
    assert suppressed(project) == {}
    status, body = _request(f"{base}/preferences?t={token}", b"action=all")
    assert status == 200 and "désinscrit de toutes nos lettres".encode() in body
    assert suppressed(project) == {"lecteur00001@example.org": "unsubscribed"}


# -- bad days: slow clients, floods of connections, big bodies, a busy store ------------------------------


def _web(project, **values) -> None:
    edit(project.settings, r"^port = 8025$", "port = 8025\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))


def _host_port(base: str) -> tuple[str, int]:
    parts = urlsplit(base)
    return parts.hostname, parts.port


def _trickle(base: str, request: bytes, report: dict, key: int, connected: threading.Barrier | None = None) -> None:
    """Send `request` one byte every 0.1 s; note how many bytes went out before the server closed the connection."""
    with socket.create_connection(_host_port(base), timeout=60) as sock:
        if connected is not None:
            connected.wait(timeout=30)
        for sent, byte in enumerate(request):
            try:
                sock.sendall(bytes([byte]))
                readable, _, _ = select.select([sock], [], [], 0.1)
                if readable and sock.recv(4096) == b"":
                    report[key] = sent + 1  # closed by the server
                    return
            except (ConnectionResetError, BrokenPipeError):
                report[key] = sent + 1
                return
        report[key] = None  # the whole request went through: the server never gave up on it


def _threads(proc: subprocess.Popen) -> int:
    return len(os.listdir(f"/proc/{proc.pid}/task"))


def test_idle_and_trickling_connections_are_dropped(project):
    _web(project, timeout=1, workers=4)
    token = "any"  # the deadline comes before any token is read
    with serving(project) as (proc, base):
        path = urlsplit(base).path
        request = f"GET {path}?t={token} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        idle = socket.create_connection(_host_port(base), timeout=30)
        report: dict[int, int | None] = {}
        _trickle(base, request, report, 0)
        assert report[0] is not None and report[0] < len(request), report  # dropped long before it was done
        assert idle.recv(1) == b""  # never sent a byte: closed by the server too, with no answer
        idle.close()
        assert proc.poll() is None  # the server itself is fine
        status, _ = _request(f"{base}?t={token}")
        assert status == 400  # answered: a bad token's page


def test_more_slow_clients_than_workers_cannot_starve_a_request(project):
    workers = 4
    _web(project, timeout=1, workers=workers)
    token = "any"
    with serving(project) as (proc, base):
        assert _request(f"{base}?t={token}")[0] == 400  # the store's thread is up
        before = _threads(proc)
        request = f"GET {urlsplit(base).path}?t={token} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        slow = 3 * workers
        connected = threading.Barrier(slow + 1)
        report: dict[int, int | None] = {}
        threads = [threading.Thread(target=_trickle, args=(base, request, report, i, connected)) for i in range(slow)]
        idle = [socket.create_connection(_host_port(base), timeout=60) for _ in range(2 * workers)]
        for t in threads:
            t.start()
        connected.wait(timeout=30)  # 20 connections open, most still in the listen backlog
        assert _threads(proc) == before  # an event loop: never a thread per connection
        # answered while every slow client still holds its connection
        status, body = _request(f"{base}?t={token}", timeout=120)
        assert status == 400 and "pas valide".encode() in body
        for t in threads:
            t.join(timeout=60)
        assert len(report) == slow and all(n is not None and n < len(request) for n in report.values()), report
        for sock in idle:
            assert sock.recv(1) == b""
            sock.close()


def test_forty_concurrent_posts_are_all_recorded_while_the_store_is_busy(project, monkeypatch):
    monkeypatch.setenv("PUBLISHER_UNSUBSCRIBE_SECRET", SECRET)
    addresses = write_subscribers(project, 40)
    signer = Signer(SECRET.encode())
    with serving(project) as (proc, base):
        start = threading.Barrier(41)
        results: dict[str, tuple[int, bytes]] = {}

        def post(i: int, address: str) -> None:
            url, data = ((f"{base}?t={signer.link(address, 'endurance')}", b"List-Unsubscribe=One-Click") if i % 2 == 0
                         else (f"{base}/preferences?t={signer.link(address)}", b"list=gt&list=elms"))
            start.wait(timeout=30)
            results[address] = _request(url, data)

        threads = [threading.Thread(target=post, args=(i, a)) for i, a in enumerate(addresses)]
        for t in threads:
            t.start()
        busy = sqlite3.connect(store_path(project), timeout=30)
        busy.execute("BEGIN IMMEDIATE")  # another process writing (a send, the scheduler) when the burst comes
        start.wait(timeout=30)
        time.sleep(0.5)
        busy.execute("COMMIT")
        busy.close()
        for t in threads:
            t.join(timeout=60)
    assert sorted(results) == sorted(addresses)
    assert {status for status, _ in results.values()} == {200}, {a: s for a, (s, _) in results.items() if s != 200}
    assert suppressed(project) == {}  # one-click leaves that campaign's list only
    db = sqlite3.connect(store_path(project))
    lists = {}
    for email, lst in db.execute("SELECT s.email, x.list FROM subscriptions x JOIN subscribers s ON s.id = x.subscriber_id"):
        lists.setdefault(email, []).append(lst)
    db.close()
    assert {a: sorted(lists.get(a, [])) for a in addresses[1::2]} == {a: ["elms", "gt"] for a in addresses[1::2]}
    assert {a: lists.get(a, []) for a in addresses[0::2]} == {a: [] for a in addresses[0::2]}


def test_a_body_over_the_limit_gets_413_and_changes_nothing(served):
    project, base = served
    token = Signer(SECRET.encode()).link("lecteur00000@example.org", "endurance")
    with socket.create_connection(_host_port(base), timeout=30) as sock:
        sock.sendall(f"POST {urlsplit(base).path}?t={token} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 10000000\r\n\r\n"
                     "List-Unsubscribe=One-Click".encode())
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413 ")
    assert lists_of(project, "lecteur00000@example.org") == ["wec"]
    status, _ = _request(f"{base}?t={token}", b"List-Unsubscribe=One-Click")  # a normal POST still works
    assert status == 200 and lists_of(project, "lecteur00000@example.org") == []


def test_an_import_does_not_bring_back_a_list_the_reader_left(served):
    project, base = served
    url = _link_from_outbox(project, "lecteur00000@example.org", base)
    assert _request(url, b"List-Unsubscribe=One-Click")[0] == 200
    assert lists_of(project, "lecteur00000@example.org") == []
    proc = project.cli("subscribers", "import", str(project.root / "subs.csv"), check=True)  # the old file again
    assert "1 list(s) left out (the reader unsubscribed from them)" in proc.stdout
    assert lists_of(project, "lecteur00000@example.org") == []
    assert lists_of(project, "lecteur00001@example.org") == ["wec"]
