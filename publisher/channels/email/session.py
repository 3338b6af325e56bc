"""One open SMTP connection of the pool as a non-blocking socket: what it has yet to write, the replies it waits for.

publisher/channels/email/pool.py drives every Session from one thread; a Slot is one of the
[smtp].connections, open, opening or paused; a Job is one recipient's message waiting for a session.
"""

from __future__ import annotations

import collections
import ssl
from dataclasses import dataclass

from publisher.channels.email.smtp import Connection, _text


@dataclass(frozen=True, eq=False)
class Job:
    target: str
    name: str
    attempts: int  # counted attempts so far (the ledger's)
    defers: int = 0  # times this run sent it back without an answer about the recipient


class Lost(Exception):
    """A session's socket failed or timed out."""


class Session:
    """One open connection: its socket, what it has yet to write, and the replies it waits for, in order."""

    def __init__(self, conn: Connection, slot: int, timeout: float):
        self.conn, self.slot, self.timeout = conn, slot, timeout
        self.sock = conn.smtp.sock
        self.sock.setblocking(False)
        self.pipelining = conn.pipelining
        self.inbuf = bytearray()
        self.out: collections.deque[memoryview] = collections.deque()  # what the socket has not taken yet
        self.gather = not isinstance(self.sock, ssl.SSLSocket)  # sendmsg() takes several buffers without a copy
        # the replies expected, in order: ("MAIL", job, ""), ..., ("END", job, message_id), ("RSET", None, "")
        self.waiting: collections.deque[tuple[str, Job | None, str]] = collections.deque()
        self.envelope: list[tuple[int, bytes]] = []  # the replies to the current envelope so far
        self.deadline = 0.0
        self.answered = 0  # answers about recipients: a session that worked, then was closed, reopens at once
        self.wants_write = False

    def write(self, *pieces: bytes) -> None:
        """Queue the pieces and send what the socket takes now; the rest goes on EVENT_WRITE (`flush`)."""
        if not self.gather:
            pieces = (b"".join(pieces),)
        self.out.extend(memoryview(p) for p in pieces if p)
        self.flush()

    def flush(self) -> None:
        out = self.out
        while out:
            try:
                n = self.sock.sendmsg(out) if self.gather else self.sock.send(out[0])
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return
            except OSError as exc:
                raise Lost(f"{exc.__class__.__name__}: {exc}") from None
            while n and out:
                if n >= len(out[0]):
                    n -= len(out.popleft())
                else:
                    out[0] = out[0][n:]
                    n = 0

    def read(self) -> tuple[list[tuple[int, bytes]], str | None]:
        """Every complete reply available now, and why the connection ended if it did (after those replies)."""
        ended = None
        while True:
            try:
                chunk = self.sock.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            except OSError as exc:
                ended = f"{exc.__class__.__name__}: {exc}"
                break
            if not chunk:
                ended = "the server closed the connection"
                break
            self.inbuf += chunk
        replies, buf, start = [], self.inbuf, 0
        while (end := buf.find(b"\r\n", start)) >= 0:
            if buf[start + 3:start + 4] == b"-":  # "250-...": a multi-line reply goes on
                start = end + 2
                continue
            try:
                code = int(buf[start:start + 3])
            except ValueError:
                raise Lost(f"not an SMTP reply: {_text(bytes(buf[start:end]))}") from None
            text = bytes(buf[4:end]) if start == 0 else b"\n".join(line[4:] for line in bytes(buf[:end]).split(b"\r\n"))
            del buf[:end + 2]
            replies.append((code, text))
            start = 0
        return replies, ended

    def hang_up(self, quit: bool) -> None:
        smtp, self.conn.smtp = self.conn.smtp, None
        if smtp is None:
            return
        if quit and not self.waiting and not self.out:
            try:
                self.sock.send(b"QUIT\r\n")
            except OSError:
                pass
        try:
            smtp.close()
        except OSError:
            pass


@dataclass(eq=False)
class Slot:
    """One of the `connections`: open, opening, or paused until `reopen_at`."""

    index: int
    session: Session | None = None
    opening: bool = False
    reopen_at: float = 0.0
    streak: int = 0  # sessions in a row that could not open or got no answer
