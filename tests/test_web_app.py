"""The application's shared pieces, on a real uvicorn server: other areas mount their routes behind the same
guard (body limit, security headers, access log without personal data)."""

from __future__ import annotations

import json
import logging
import socket
from datetime import datetime, timezone
from urllib.parse import urlsplit

from starlette.responses import PlainTextResponse
from starlette.routing import Route

from publisher.app import load_settings
from publisher.store.db import Store
from publisher.web.app import create_app
from publisher.web.security import RateLimit, truncate_ip
from publisher.web.tokens import Signer
from support.web import app_server, request


def test_extra_route_lists_are_mounted_behind_the_same_guard(project, caplog):
    settings = load_settings(project.settings)
    store = Store(project.root / "var" / "web.sqlite3")
    seen = []

    async def hook(req):
        seen.append(await req.body())
        return PlainTextResponse("ok")

    plain = [Route("/hooks/plain", hook, methods=["POST"])]
    with_context = lambda web: [Route("/hooks/ctx", hook, methods=["POST"])]  # noqa: E731 - a module's `routes`
    app = create_app(settings, store, Signer(b"k" * 32), lambda: datetime(2026, 11, 23, tzinfo=timezone.utc),
                     extra_routes=[plain, with_context])
    caplog.set_level(logging.INFO, logger="publisher.access")
    try:
        with app_server(app, settings) as base:
            assert request(f"{base}/hooks/plain?token=SECRET-TOKEN", b"event=bounce&to=reader@example.org") == (200, b"ok")
            assert request(f"{base}/hooks/ctx", b"x=1") == (200, b"ok")
            host, port = urlsplit(base).hostname, urlsplit(base).port
            with socket.create_connection((host, port), timeout=30) as sock:
                sock.sendall(b"POST /hooks/plain HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\nabc")
                reply = b""
                while chunk := sock.recv(65536):
                    reply += chunk
            assert reply.startswith(b"HTTP/1.1 413 ") and b"x-content-type-options: nosniff" in reply.lower()
            assert request(f"{base}/nowhere")[0] == 404
    finally:
        store.close()
    assert seen == [b"event=bounce&to=reader@example.org", b"x=1"]  # the 413 never reached the route
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "publisher.access"]
    assert [(x["method"], x["path"], x["status"]) for x in lines] == [
        ("POST", "/hooks/plain", 200), ("POST", "/hooks/ctx", 200), ("POST", "/hooks/plain", 413), ("GET", "/nowhere", 404)]
    text = caplog.text
    assert "SECRET-TOKEN" not in text and "reader@example.org" not in text and "127.0.0.1" not in text
    assert {x["ip"] for x in lines} == {"127.0.0.0"}


def test_ip_truncation_and_rate_limits():
    assert truncate_ip("203.0.113.77") == "203.0.113.0"
    assert truncate_ip("2001:db8:1:2:3::7") == "2001:db8:1::"
    assert truncate_ip("not an ip") is None and truncate_ip(None) is None
    limit = RateLimit(2, 60)
    assert [limit.allow("a", now=t) for t in (0, 1, 2)] == [True, True, False]
    assert limit.allow("b", now=2) and limit.allow("a", now=61)  # per key, and the window slides
