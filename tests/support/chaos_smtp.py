"""A relay on a bad day, for the sending-engine tests: a small asyncio SMTP server on 127.0.0.1, port 0.

It speaks enough SMTP for publisher (EHLO with PIPELINING, MAIL, RCPT, DATA, RSET, NOOP, QUIT) and
misbehaves the way real relays do, from a seeded random generator:

- `rcpt_4xx`: the share of RCPT answered "450 4.2.0 try later" (greylisting, rate limits per domain);
- `busy_every`: every Nth session is refused at once with a "421 too busy" greeting (a burst of them
  follows each other, `busy_burst` long);
- `close_after`: a session is closed with "421 closing" after this many messages (connection caps);
- `stall`: recipients whose message is read in full and never answered, the session left open (a relay
  that hangs mid-transaction: the client must give up after its timeout, and cannot know the outcome).

For each recipient it counts `answers`: how many times the relay said something about that recipient
(a reply to its RCPT or to its message). That is what an attempt is: a test compares it with the
ledger's `attempts`. `received` holds each accepted message: (rcpt, bytes).
"""

from __future__ import annotations

import asyncio
import collections
import random
import threading


class _Session(asyncio.Protocol):
    def __init__(self, server: "ChaosSmtp"):
        self.srv = server
        self.buf = bytearray()
        self.in_data = False
        self.rcpts: list[str] = []
        self.messages = 0
        self.stalled = False

    def connection_made(self, transport):
        self.t = transport
        srv = self.srv
        with srv.lock:
            srv.sessions += 1
            n = srv.sessions
        if srv.busy_every and (n % srv.busy_every) < srv.busy_burst:
            with srv.lock:
                srv.refused += 1
            transport.write(b"421 4.7.0 chaos too busy, try again later\r\n")
            transport.close()
            return
        transport.write(b"220 chaos ESMTP\r\n")

    def data_received(self, data):
        if self.t.is_closing() or self.stalled:
            return
        self.buf += data
        out: list[bytes] = []
        while not self.t.is_closing():
            if self.in_data:
                i = self.buf.find(b"\r\n.\r\n")
                if i < 0:
                    break
                body = bytes(self.buf[:i + 2])
                del self.buf[:i + 5]
                self.in_data = False
                reply = self._message(body)
                if self.stalled:
                    break
                out.append(reply)
                continue
            i = self.buf.find(b"\r\n")
            if i < 0:
                break
            line = bytes(self.buf[:i]).decode("ascii", "replace")
            del self.buf[:i + 2]
            reply = self._command(line)
            if reply:
                out.append(reply)
            if reply.startswith(b"421") or reply.startswith(b"221"):
                self.t.write(b"".join(out))
                self.t.close()
                return
        if out:
            self.t.write(b"".join(out))

    def _command(self, line: str) -> bytes:
        verb = line[:4].upper()
        srv = self.srv
        if verb == "EHLO":
            return b"250-chaos\r\n250-PIPELINING\r\n250 8BITMIME\r\n" if srv.pipelining else b"250-chaos\r\n250 8BITMIME\r\n"
        if verb == "HELO":
            return b"250 chaos\r\n"
        if verb == "MAIL":
            if srv.close_after and self.messages >= srv.close_after:
                return b"421 4.7.0 chaos closing: too many messages on one connection\r\n"
            self.rcpts = []
            return b"250 2.1.0 ok\r\n"
        if verb == "RCPT":
            rcpt = line.partition(":")[2].strip().strip("<>")
            with srv.lock:
                srv.answers[rcpt] += 1
                refuse = srv.rng.random() < srv.rcpt_4xx
            if refuse:
                return b"450 4.2.0 chaos try later\r\n"
            self.rcpts.append(rcpt)
            return b"250 2.1.5 ok\r\n"
        if verb == "DATA":
            if not self.rcpts:
                return b"554 5.5.1 no valid recipients\r\n"
            self.in_data = True
            return b"354 go ahead\r\n"
        if verb == "RSET":
            self.rcpts = []
            return b"250 2.0.0 ok\r\n"
        if verb == "QUIT":
            return b"221 2.0.0 bye\r\n"
        return b"250 2.0.0 ok\r\n"  # NOOP and the rest

    def _message(self, body: bytes) -> bytes:
        srv = self.srv
        self.messages += 1
        if any(r in srv.stall for r in self.rcpts):
            self.stalled = True  # read everything, answer nothing, ever
            return b""
        with srv.lock:
            for r in self.rcpts:
                srv.received.append((r, body))
        self.rcpts = []
        return b"250 2.0.0 chaos queued\r\n"


class ChaosSmtp:
    """`with ChaosSmtp(rcpt_4xx=0.1, busy_every=5, seed=1) as srv:` -> srv.port, srv.received, srv.answers."""

    def __init__(self, *, rcpt_4xx: float = 0.0, busy_every: int = 0, busy_burst: int = 1, close_after: int = 0,
                 pipelining: bool = True, stall: tuple[str, ...] = (), seed: int = 0):
        self.stall = set(stall)
        self.rcpt_4xx, self.busy_every, self.busy_burst, self.close_after = rcpt_4xx, busy_every, busy_burst, close_after
        self.pipelining = pipelining
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.sessions = self.refused = 0
        self.answers: collections.Counter = collections.Counter()
        self.received: list[tuple[str, bytes]] = []
        self.port = 0

    def __enter__(self) -> "ChaosSmtp":
        ready = threading.Event()

        def run() -> None:
            self.loop = asyncio.new_event_loop()
            server = self.loop.run_until_complete(self.loop.create_server(lambda: _Session(self), "127.0.0.1", 0))
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()
            server.close()
            self.loop.run_until_complete(server.wait_closed())
            self.loop.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def counts(self) -> collections.Counter:
        with self.lock:
            return collections.Counter(r for r, _ in self.received)
