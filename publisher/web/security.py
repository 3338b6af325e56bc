"""What every area of the web application shares to face the internet: the request guard (body size,
time, concurrency, access log, security headers), rate limits, the client's address behind a proxy,
and the checks of public forms (CSRF without sessions, honeypot).

A new area (webhooks, admin, archive) gets all of this by being mounted in `create_app`; it uses
`RateLimit`, `form_allowed` and `read_form` for its own forms.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import threading
import time
from collections import OrderedDict, deque
from typing import Awaitable, Callable, Iterable, Sequence
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from publisher.web.tokens import Signer

access_log = logging.getLogger("publisher.access")
HONEYPOT = "website"  # a field hidden from people; a bot that fills every field fills this one
FORM_MAX_AGE = 24 * 3600  # a sign-up page's CSRF token is good for a day


def truncate_ip(ip: str | None) -> str | None:
    """203.0.113.7 -> 203.0.113.0, 2001:db8:1:2::7 -> 2001:db8:1::: what logs and (by default) consent records keep."""
    if not ip:
        return None
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False).network_address)


def client_ip(scope: Scope) -> str | None:
    """The client's address as uvicorn saw it (X-Forwarded-For is applied by uvicorn for trusted proxies only)."""
    client = scope.get("client")
    return client[0] if client else None


class RateLimit:
    """At most `limit` events per `window` seconds per key, remembered for at most `keys` keys (oldest forgotten)."""

    def __init__(self, limit: int, window: float, keys: int = 100_000):
        self.limit, self.window, self.keys = limit, window, keys
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, key: str, now: float | None = None) -> bool:
        """Count one event for `key`; False when it is over the limit (the event is not counted then)."""
        if self.limit <= 0:
            return True
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._seen.pop(key, None) or deque()
            while times and times[0] <= now - self.window:
                times.popleft()
            ok = len(times) < self.limit
            if ok:
                times.append(now)
            self._seen[key] = times
            while len(self._seen) > self.keys:
                self._seen.popitem(last=False)
            return ok


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def form_allowed(request: Request, form: dict[str, list[str]], signer: Signer, now: float,
                 origins: Iterable[str]) -> bool:
    """CSRF without sessions: the form's own signed field (our pages), or an Origin (else Referer) we trust.

    An embedded form on the publisher's WordPress site carries no token (it is static HTML), so it is
    accepted by its Origin; a page of another site posting in a reader's name is refused."""
    token = (form.get("csrf") or [""])[0]
    issued = signer.form_issued(token) if token else None
    if issued is not None and now - FORM_MAX_AGE <= issued <= now + 60:
        return True
    origin = request.headers.get("origin") or ""
    if not origin or origin == "null":
        origin = origin_of(request.headers.get("referer") or "")
    return origin.lower() in {o.lower().rstrip("/") for o in origins}


async def read_form(request: Request) -> dict[str, list[str]]:
    """An urlencoded body (already size-limited by the guard), as lists of values."""
    body = await request.body()
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


class Guard:
    """ASGI middleware: body limit (413), a deadline for the app's answer (503), at most `workers` requests
    handled at once (the others wait), security headers, and one access log line without personal data."""

    def __init__(self, app: ASGIApp, *, max_body: int, timeout: float, workers: int,
                 body_limits: Sequence[tuple[str, int]] = ()):
        self.app, self.max_body, self.timeout = app, max_body, timeout
        self.workers = workers
        self.body_limits = tuple(body_limits)  # (path prefix, bytes): an area that takes larger bodies (ESP batches)
        self._slots: asyncio.Semaphore | None = None  # made in the server's loop, on the first request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.workers)
        start = time.monotonic()
        state = {"status": 0, "bytes": 0, "started": False}
        headers = dict(scope.get("headers") or [])
        deadline: asyncio.Timeout | None = None
        slot = _Slot(self._slots)

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"], state["started"] = message["status"], True
                message = dict(message)
                own = {name.lower() for name, _ in message.get("headers", [])}  # a page's own policy wins (the admin area's frames)
                message["headers"] = [*message.get("headers", []), *(h for h in _SECURITY_HEADERS if h[0] not in own)]
            elif message["type"] == "http.response.body":
                state["bytes"] += len(message.get("body", b""))
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                # answered: work left for after the answer (a confirmation mail) neither holds a
                # request's place nor is cut short by the request's deadline
                slot.release()
                if deadline is not None:
                    deadline.reschedule(None)

        path = scope.get("path", "")
        max_body = next((n for prefix, n in self.body_limits if path.startswith(prefix)), self.max_body)
        try:
            length = int(headers.get(b"content-length", b"0") or 0)
        except ValueError:
            length = 0
        try:
            if length > max_body:  # answered before reading it; the connection is closed after
                await _plain(guarded_send, 413, "Request body too large", close=True)
                return
            received = 0

            async def limited_receive() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > max_body:
                        raise _TooLarge()
                return message

            await slot.acquire()
            try:
                async with asyncio.timeout(self.timeout) as deadline:
                    await self.app(scope, limited_receive, guarded_send)
            finally:
                slot.release()
        except _TooLarge:
            if not state["started"]:
                await _plain(guarded_send, 413, "Request body too large", close=True)
        except TimeoutError:
            if not state["started"]:
                await _plain(guarded_send, 503, "Try again later", close=True)
        finally:
            access_log.info(json.dumps({
                "method": scope.get("method"), "path": _route_of(scope), "status": state["status"],
                "bytes": state["bytes"], "ms": round((time.monotonic() - start) * 1000, 1),
                "ip": truncate_ip(client_ip(scope))}))


class _TooLarge(Exception):
    pass


class _Slot:
    """One request's place among the `workers`, released once (when answered, or when the app returns)."""

    def __init__(self, slots: asyncio.Semaphore):
        self.slots, self.held = slots, False

    async def acquire(self) -> None:
        await self.slots.acquire()
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.slots.release()


# no query string in the log: it holds tokens; no address: bodies are never logged
def _route_of(scope: Scope) -> str:
    return scope.get("path", "")[:200]


_SECURITY_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-robots-tag", b"noindex"),
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
]


async def _plain(send: Callable[[Message], Awaitable[None]], status: int, text: str, close: bool = False) -> None:
    body = text.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
