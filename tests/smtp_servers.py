"""Real SMTP servers for the tests: aiosmtpd on 127.0.0.1, port 0, recording what it accepted.

`SmtpServer(faults=...)` answers per recipient and per attempt from a script, so a test can make
one address get 421, 450, 451 or 550, or have the connection dropped before or after the message:

    faults = {"a@example.org": ["rcpt 450 4.2.1 Mailbox busy", "ok"],
              "b@example.org": ["data 550 5.1.1 No such user"],
              "c@example.org": ["drop-rcpt", "ok"], "d@example.org": ["drop-data"]}

Actions: "ok"; "mail|rcpt|data <reply>" answers that step with the reply; "drop-rcpt" closes the
connection at RCPT; "drop-data" reads the whole message and closes without answering (the client
cannot know if it was accepted; nothing is recorded). A list's last action repeats.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from aiosmtpd.controller import Controller


@dataclass
class Received:
    mail_from: str
    rcpt: str
    data: bytes

    def message(self) -> EmailMessage:
        return BytesParser(policy=policy.default).parsebytes(self.data)


@dataclass
class _Handler:
    faults: dict[str, list[str]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    attempts: collections.Counter = field(default_factory=collections.Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    delay: float = 0.0  # seconds before answering each DATA: a slow server keeps a send running

    def _action(self, rcpt: str, bump: bool) -> str:
        script = self.faults.get(rcpt)
        if not script:
            return "ok"
        with self.lock:
            n = self.attempts[rcpt]
            if bump:
                self.attempts[rcpt] += 1
        return script[min(n, len(script) - 1)]

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        action = self._action(address, bump=False)
        if action.startswith("rcpt "):
            self._action(address, bump=True)
            return action[5:]
        if action == "drop-rcpt":
            self._action(address, bump=True)
            server.transport.abort()
            return "250 OK"  # never reaches the client
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        envelope.mail_from = address
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        rcpt = envelope.rcpt_tos[0]
        action = self._action(rcpt, bump=True)
        if action.startswith("data "):
            return action[5:]
        if action == "drop-data":
            server.transport.abort()
            return "250 OK"
        with self.lock:
            self.received.append(Received(envelope.mail_from, rcpt, envelope.original_content or envelope.content))
        return "250 2.0.0 Ok: queued"


class _Controller(Controller):
    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]  # port 0: learn the real one before connecting
        super()._trigger_server()


class SmtpServer:
    """`with SmtpServer() as srv:` -> srv.port, srv.received, srv.count(address)."""

    def __init__(self, faults: dict[str, list[str]] | None = None, delay: float = 0.0):
        self.handler = _Handler(faults=dict(faults or {}), delay=delay)
        self.controller = _Controller(self.handler, hostname="127.0.0.1", port=0)

    def __enter__(self) -> "SmtpServer":
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()

    @property
    def port(self) -> int:
        return self.controller.port

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)

    def counts(self) -> collections.Counter:
        return collections.Counter(r.rcpt for r in self.received)

    def count(self, address: str) -> int:
        return self.counts()[address]

    def settings_toml(self, **extra) -> str:
        """An [smtp] table pointing at this server (no TLS, no login), plus extra keys."""
        lines = ["[smtp]", 'host = "127.0.0.1"', f"port = {self.port}", 'security = "none"']
        for k, v in extra.items():
            lines.append(f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"')
        return "\n".join(lines)
