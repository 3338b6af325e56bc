"""One-click unsubscribe against the running `publisher serve`, with real HTTP requests."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from email import policy
from email.parser import BytesParser
from typing import Iterator
from urllib.parse import urlsplit

import pytest

from publisher.cli import main
from publisher.web.tokens import Signer
from support.email_project import ENV, SECRET, send_args, store_path, suppressed, write_subscribers
from support.user_errors import edit


def _request(url: str, data: bytes | None = None, timeout: float = 10) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if data is not None:
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@contextlib.contextmanager
def serving(project) -> Iterator[tuple[subprocess.Popen, str]]:
    """`publisher serve --port 0` running as a real process: (the process, its unsubscribe URL)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")} | ENV
    proc = subprocess.Popen([sys.executable, "-m", "publisher", "--settings", str(project.settings), "serve", "--port", "0"],
                            cwd=project.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "serving unsubscribe links on http://127.0.0.1:" in line, proc.stderr.read() if proc.poll() is not None else line
        yield proc, line.split()[4]  # http://127.0.0.1:PORT/newsletter/unsubscribe
    finally:
        proc.terminate()
        proc.wait(timeout=30)


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
    token = Signer(SECRET.encode()).token("lecteur00000@example.org")
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
        assert status == 200


def test_more_slow_clients_than_workers_cannot_starve_a_request(project):
    workers = 4
    _web(project, timeout=1, workers=workers)
    token = Signer(SECRET.encode()).token("lecteur00000@example.org")
    with serving(project) as (proc, base):
        request = f"GET {urlsplit(base).path}?t={token} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        slow = 3 * workers
        connected = threading.Barrier(slow + 1)
        report: dict[int, int | None] = {}
        threads = [threading.Thread(target=_trickle, args=(base, request, report, i, connected)) for i in range(slow)]
        idle = [socket.create_connection(_host_port(base), timeout=60) for _ in range(2 * workers)]
        for t in threads:
            t.start()
        connected.wait(timeout=30)  # 20 connections open, most still in the listen backlog
        assert _threads(proc) <= workers + 1  # the main thread and the workers: never one per connection
        # queued behind every slow client (five rounds of `timeout` for the 4 workers), and answered
        status, body = _request(f"{base}?t={token}", timeout=120)
        assert status == 200 and "Me désinscrire".encode() in body
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
            url, data = ((f"{base}?t={signer.token(address)}", b"List-Unsubscribe=One-Click") if i % 2 == 0 else
                         (f"{base}/preferences?t={signer.token(address)}", b"list=gt&list=elms"))
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
    assert suppressed(project) == {a: "unsubscribed" for a in addresses[0::2]}
    db = sqlite3.connect(store_path(project))
    lists = {}
    for email, lst in db.execute("SELECT s.email, x.list FROM subscriptions x JOIN subscribers s ON s.id = x.subscriber_id"):
        lists.setdefault(email, []).append(lst)
    db.close()
    assert {a: sorted(lists.get(a, [])) for a in addresses[1::2]} == {a: ["elms", "gt"] for a in addresses[1::2]}


def test_a_body_over_the_limit_gets_413_and_changes_nothing(served):
    project, base = served
    token = Signer(SECRET.encode()).token("lecteur00000@example.org")
    with socket.create_connection(_host_port(base), timeout=30) as sock:
        sock.sendall(f"POST {urlsplit(base).path}?t={token} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 10000000\r\n\r\n"
                     "List-Unsubscribe=One-Click".encode())
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.0 413 ")
    assert suppressed(project) == {}
    status, _ = _request(f"{base}?t={token}", b"List-Unsubscribe=One-Click")  # a normal POST still works
    assert status == 200 and suppressed(project) == {"lecteur00000@example.org": "unsubscribed"}
