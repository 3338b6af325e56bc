"""The one place smtplib is called: connections, a pool of sending threads, a rate limit, and reply meanings.

What a reply means for the ledger:
    250 after DATA                      -> sent
    4xx to RCPT, DATA or the message    -> retry later; counts as an attempt (the relay answered for that
                                           recipient), [smtp].max_attempts of them and it is failed
    421, 4xx to MAIL, a refused connection, a connection that drops before DATA's end was sent
                                        -> deferred: the recipient goes to another connection, and no
                                           attempt is counted (the relay said nothing about the recipient)
    5xx to RCPT or the message          -> failed for that recipient (550/551/553: hard bounce, suppressed)
    the connection drops after the message was sent, before the reply -> unknown (never retried blindly)

A connection that could not open, or was closed by a 421, pauses (the 421's wait, else 1 s doubling to
30 s) and takes no work meanwhile: the other connections carry on, so a relay refusing some sessions
never uses up anybody's attempts. When no connection can open for [smtp].retry_wait seconds, the
send stops and the recipients stay `planned` for the next run.

Speed. The message bytes come ready for the wire (CRLF, no line starting with "."), so DATA sends them
as they are, and the end-of-data `.` goes out in the same write as the body: a small write of its
own waits for the server's delayed ACK (Nagle), ~40 ms a message. When the relay offers PIPELINING
(RFC 2920), MAIL, RCPT and DATA go out together, and the next message's envelope travels with the
previous message's end of data: one round trip per message. Work moves between threads in batches.

Some failures are the settings' fault, not the recipient's, and no retry can fix them: a refused
login, a certificate we cannot trust, a TLS handshake that fails, a server without STARTTLS or AUTH,
a 530 "authentication/TLS required" or a 5xx to our own address at MAIL FROM. Those raise
DeliveryError; the pool stops and every message not yet on the wire stays `planned` for the rerun.
TLS always verifies the server's certificate and host name, against the system trust store or
against [smtp].ca_file only (publisher/smtp_security.py).
"""

from __future__ import annotations

import collections
import enum
import errno
import re
import smtplib
import socket
import ssl
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable

from publisher.config import SmtpSettings
from publisher.errors import DeliveryError, DiskFullError
# password_for is also imported from here by the email channel
from publisher.smtp_security import PASSWORD_ENV, RERUN, certificate_error, password_for, scrub, tls_context

HARD_BOUNCE_CODES = (550, 551, 553)
SESSION_REFUSED = (530, 538)  # at MAIL FROM: "authentication required" / "encryption required": our settings
MAX_DEFERS = 3  # a recipient deferred this often in one run (421s, drops) waits in the ledger instead
CHUNK = 16  # jobs a worker takes at a time
FIRST_PAUSE, MAX_PAUSE = 1.0, 30.0  # seconds a connection waits before reopening (doubling), unless told
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class Outcome(str, enum.Enum):
    SENT = "sent"
    RETRY = "retry"  # the relay answered 4xx for this recipient: an attempt
    DEFER = "defer"  # nothing said about this recipient (421, drop, refused connection): not an attempt
    FAILED = "failed"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Reply:
    """What became of one message, with the server's words."""

    outcome: Outcome
    code: int | None
    text: str
    wait: float | None = None  # seconds the server asked us to wait (421 "try again in 60 seconds")

    @property
    def hard_bounce(self) -> bool:
        return self.outcome is Outcome.FAILED and self.code in HARD_BOUNCE_CODES

    def line(self) -> str:
        return f"{self.code} {self.text}" if self.code else self.text


_UNSAFE = re.compile(r"[\s<>]")
_WAIT = re.compile(r"(\d+)\s*(seconds?|secs?|s\b|minutes?|mins?|m\b)", re.I)


def _text(msg: bytes | str) -> str:
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    return " ".join(msg.split())[:300]


def classify(code: int, msg: bytes | str, step: str) -> Reply:
    """The meaning of an SMTP reply to MAIL, RCPT, DATA or the end of the message."""
    if code == 250 and isinstance(msg, bytes) and len(msg) < 300 and msg.isascii() and b"\r" not in msg and b"\n" not in msg:
        return Reply(Outcome.SENT, code, msg.decode("ascii").strip())  # the common case, cheaply
    text = _text(msg)
    if 200 <= code < 400:
        return Reply(Outcome.SENT, code, text)
    if 400 <= code < 500:
        if code == 421:  # the server is closing the session: a statement about itself, not the recipient
            wait = None
            if m := _WAIT.search(text):
                wait = float(m.group(1)) * (60 if m.group(2).lower().startswith("m") else 1)
            return Reply(Outcome.DEFER, code, f"{step}: {text}", wait)
        return Reply(Outcome.DEFER if step == "MAIL FROM" else Outcome.RETRY, code, f"{step}: {text}")
    return Reply(Outcome.FAILED, code, f"{step}: {text}")


class _Lost(Exception):
    """The connection dropped or timed out; `wired` says whether the message had left."""

    def __init__(self, exc: BaseException, wired: bool):
        super().__init__(str(exc))
        self.reply = Reply(Outcome.UNKNOWN if wired else Outcome.DEFER, None,
                           f"connection lost ({exc.__class__.__name__}: {_text(str(exc))})"
                           + (" after the message was sent; outcome unknown" if wired else " before the message was accepted"))


class Connection:
    """One SMTP session, reused for many messages."""

    def __init__(self, settings: SmtpSettings, password: str | None, context: ssl.SSLContext | None = None):
        self.s, self.password = settings, password
        self.context = context or tls_context(settings)  # one per pool: loading the trust store costs
        self.smtp: smtplib.SMTP | None = None
        self.pipelining = False
        self._sock: socket.socket | None = None
        self._buf = bytearray()
        self.answered = 0  # answers about recipients on this session (a working session the relay then closed)
        self.where = f"{settings.host}:{settings.port}"

    def open(self) -> Reply | None:
        """Connect, secure and log in; a Reply (deferred) when the server cannot be reached, None when ready.

        Raises DeliveryError for what only a change of settings can fix (see the module docstring).
        """
        s, where = self.s, self.where
        step = "connect"
        try:
            if s.security == "tls":
                self.smtp = smtplib.SMTP_SSL(s.host, s.port, local_hostname=s.helo_name, timeout=s.timeout,
                                             context=self.context)
            else:
                self.smtp = smtplib.SMTP(s.host, s.port, local_hostname=s.helo_name, timeout=s.timeout)
            self.smtp.ehlo()
            if s.security == "starttls":
                step = "starttls"
                self.smtp.starttls(context=self.context)
                self.smtp.ehlo()
            if s.username:
                step = "login"
                self.smtp.login(s.username, self.password or "")
            # our writes are whole commands or whole messages: never hold one back for an ACK (Nagle)
            self.smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except smtplib.SMTPAuthenticationError as exc:
            self.close()
            raw = exc.smtp_error
            said = scrub(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw), s.username, self.password)
            if 400 <= exc.smtp_code < 500:  # 454 "temporary authentication failure": the relay's trouble
                return replace(classify(exc.smtp_code, said, "login"), outcome=Outcome.DEFER)
            raise DeliveryError(f"email: login refused by {where} ({exc.smtp_code} {_text(said)})",
                                hint=f"check [smtp].username and {PASSWORD_ENV}, {RERUN}") from None
        except smtplib.SMTPNotSupportedError:
            self.close()
            if step == "starttls":
                raise DeliveryError(f"email: {where} does not offer STARTTLS ([smtp].security = 'starttls')",
                                    hint="if this port expects TLS from the first byte (often 465), set [smtp].security"
                                         f" = 'tls'; {RERUN}") from None
            raise DeliveryError(f"email: {where} does not offer login (AUTH) to [smtp].username {s.username!r}"
                                f" over [smtp].security = {s.security!r}",
                                hint="many relays offer AUTH only after TLS: set [smtp].security = 'starttls' or 'tls'"
                                     f" (or remove [smtp].username if the relay needs no login); {RERUN}") from None
        except ssl.SSLCertVerificationError as exc:
            self.close()
            raise certificate_error(s, exc) from None
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:  # the peer hung up mid-handshake: maybe busy
            self.close()
            return Reply(Outcome.DEFER, None, f"{step}: {where} closed the connection during the TLS handshake ({exc})"[:300])
        except ssl.SSLError as exc:
            self.close()
            raise DeliveryError(f"email: TLS handshake with {where} failed ({exc.reason or exc}) with [smtp].security = {s.security!r}",
                                hint="check [smtp].security and [smtp].port: 'tls' is TLS from the first byte (often"
                                     f" port 465), 'starttls' upgrades a plain session (often 587); {RERUN}") from None
        except smtplib.SMTPConnectError as exc:
            self.close()
            reply = classify(exc.smtp_code, exc.smtp_error, "connect") if exc.smtp_code >= 400 else \
                Reply(Outcome.DEFER, None, f"connect: {_text(exc.smtp_error)}")
            return replace(reply, outcome=Outcome.DEFER)  # whatever it said, it said nothing of a recipient
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            said = scrub(str(exc), s.username, self.password)  # an error during AUTH may carry the server's echo
            return Reply(Outcome.DEFER, None, f"cannot connect to {where}: {exc.__class__.__name__}: {said}"[:300])
        self.pipelining = self.smtp.has_extn("pipelining")
        self.answered = 0
        # from here on replies are read off the socket directly (smtplib reads one line per call); the
        # set-up above was lockstep, so smtplib's own buffer holds nothing
        self._sock, self._buf = self.smtp.sock, bytearray()
        return None

    @property
    def ready(self) -> bool:
        return self.smtp is not None

    # -- one transaction, in steps the pool can interleave with the next one ----------------------

    @staticmethod
    def envelope(sender: str, rcpt: str) -> bytes:
        """MAIL, RCPT and DATA in one piece (PIPELINING); addresses are normalised, never with spaces or CR/LF."""
        if _UNSAFE.search(rcpt) or _UNSAFE.search(sender):
            raise ValueError(f"address with spaces or angle brackets: {rcpt!r}")
        return f"MAIL FROM:<{sender}>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n".encode("ascii")

    def write(self, data: bytes, wired: bool = False) -> None:
        try:
            self._sock.sendall(data)
        except (OSError, AttributeError) as exc:
            self.abort()
            raise _Lost(exc, wired) from None

    def _reply(self, wired: bool = False) -> tuple[int, bytes]:
        """The next reply, read straight off the socket: pipelined replies arrive several to a read."""
        buf = self._buf
        try:
            while True:
                start = 0
                while (end := buf.find(b"\r\n", start)) >= 0:
                    if buf[start + 3:start + 4] == b"-":  # "250-..." : the reply goes on
                        start = end + 2
                        continue
                    code = int(buf[start:start + 3])
                    text = bytes(buf[4:end]) if start == 0 else b"\n".join(l[4:] for l in bytes(buf[:end]).split(b"\r\n"))
                    del buf[:end + 2]
                    return code, text
                chunk = self._sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the server closed the connection")
                buf += chunk
        except (OSError, ValueError, AttributeError) as exc:
            self.abort()
            raise _Lost(exc, wired) from None

    def begin(self, sender: str, rcpt: str, sent: bool, meanwhile: Callable[[], object] | None = None) -> Reply | None:
        """The envelope of one message (already `sent` when pipelined); None once DATA said 354.

        `meanwhile` runs while the server answers. A refusal comes back as a Reply; the transaction is
        reset (or the connection closed on 421)."""
        if self.pipelining:
            if not sent:
                self.write(self.envelope(sender, rcpt))
            if meanwhile:
                meanwhile()
            mail, rcpt_reply, data = self._reply(), self._reply(), self._reply()
        else:
            mail_cmd, rcpt_cmd, _ = self.envelope(sender, rcpt).split(b"\r\n", 2)
            self.write(mail_cmd + b"\r\n")
            if meanwhile:
                meanwhile()
            mail = self._reply()
            rcpt_reply = data = (0, b"")
            if mail[0] == 250:
                self.write(rcpt_cmd + b"\r\n")
                rcpt_reply = self._reply()
                if rcpt_reply[0] in (250, 251):
                    self.write(b"DATA\r\n")
                    data = self._reply()
        if mail[0] in SESSION_REFUSED:  # every recipient would get it: a settings problem, not theirs
            self.abort()
            raise DeliveryError(f"email: {self.where} refused mail before TLS or login ({mail[0]} {_text(mail[1])})",
                                hint=f"check [smtp].security and [smtp].username, {RERUN}")
        if 500 <= mail[0] < 600:  # our own address refused: every recipient would get it too
            self.abort()
            raise DeliveryError(f"email: {self.where} refused the sender address {sender} ({mail[0]} {_text(mail[1])})",
                                hint=f"check [email].from (the relay may only accept addresses of your account), {RERUN}")
        if mail[0] != 250:
            refused = classify(mail[0], mail[1], "MAIL FROM")
        elif rcpt_reply[0] not in (250, 251):
            refused = classify(rcpt_reply[0], rcpt_reply[1], "RCPT TO")
        elif data[0] != 354:
            refused = classify(data[0], data[1], "DATA")
        else:
            return None
        try:
            if data[0] == 354:  # a relay that accepted DATA without a recipient: end it empty, then reset
                self.write(b".\r\n")
                self._reply()
            if 421 in (mail[0], rcpt_reply[0], data[0]):  # the server is closing this session
                self.abort()
            else:
                self.write(b"RSET\r\n")
                self._reply()
        except _Lost:
            pass  # the answer about the recipient stands; the next message opens a new connection
        return refused

    def finish(self, data: bytes, then: bytes = b"", meanwhile: Callable[[], object] | None = None) -> Reply:
        """The message, its end of data and (pipelined) the next envelope in one write; the reply to the message.

        `meanwhile` runs while the server reads and answers (building the next message)."""
        self.write(data + b".\r\n" + then, wired=True)
        if meanwhile:
            meanwhile()
        code, msg = self._reply(wired=True)
        reply = classify(code, msg, "end of DATA")
        if code == 421:
            self.abort()
        return reply

    def send(self, sender: str, rcpt: str, data: bytes) -> Reply:
        """One message, start to end (test copies)."""
        try:
            refused = self.begin(sender, rcpt, sent=False)
            return refused or self.finish(data)
        except _Lost as lost:
            return lost.reply

    def abort(self) -> None:
        """Drop the connection at once (mid-transaction: the server discards what it had)."""
        smtp, self.smtp, self._sock = self.smtp, None, None
        if smtp is not None:
            smtp.close()

    def close(self) -> None:
        smtp, self.smtp, self._sock = self.smtp, None, None
        if smtp is None:
            return
        try:
            if self._buf:  # a reply smtplib would not know to skip: just hang up
                raise OSError("unread replies")
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            try:
                smtp.close()
            except OSError:
                pass


class RateLimit:
    """Messages spaced so that neither the per-second nor the per-hour limit is passed (0 = none)."""

    def __init__(self, per_second: float, per_hour: int):
        gaps = [1.0 / per_second if per_second > 0 else 0.0, 3600.0 / per_hour if per_hour > 0 else 0.0]
        self.gap = max(gaps)
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self, halt: Callable[[float], bool]) -> bool:
        """Block until the next message may go; False if `halt(delay)` says to stop meanwhile."""
        if self.gap <= 0:
            return True
        with self._lock:
            now = time.monotonic()
            at = max(now, self._next)
            self._next = at + self.gap
        delay = at - time.monotonic()
        return not halt(delay) if delay > 0 else True

    def now_free(self) -> bool:
        """Take the next slot if it is free at once (to pipeline the next envelope without delaying this message)."""
        if self.gap <= 0:
            return True
        with self._lock:
            now = time.monotonic()
            if self._next > now:
                return False
            self._next = now + self.gap
            return True


@dataclass(frozen=True)
class Job:
    target: str
    name: str
    attempts: int  # counted attempts so far (the ledger's)
    defers: int = 0  # times this run sent it back without an answer about the recipient


Builder = Callable[[Job], tuple[bytes, str]]  # job -> (message bytes, Message-ID)
Result = tuple[Job, "Reply | None", str]  # reply None: never started (stop, fatal error): back to planned


class Pool:
    """`connections` threads, each with its own reused SMTP connection, taking jobs in chunks from one queue.

    Results come back on `results` as lists of (job, reply, message_id). A deferred job goes back on the
    queue for another connection; after MAX_DEFERS it comes back as a DEFER reply (the ledger waits).
    """

    def __init__(self, settings: SmtpSettings, password: str | None, sender: str, build: Builder, *,
                 stop: threading.Event, on_wire: Callable[[str], None], on_reply: Callable[[Job, Reply, str], None],
                 connections: int | None = None):
        self.settings, self.password, self.sender, self.build = settings, password, sender, build
        self.stop, self.on_wire, self.on_reply = stop, on_wire, on_reply
        self._jobs: collections.deque[list[Job]] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self._halt = threading.Event()  # stop, a fatal error, or give_up(): take no more work
        self.results: collections.deque[list[Result]] = collections.deque()
        self.result_ready = threading.Event()
        self.limit = RateLimit(settings.rate_per_second, settings.rate_per_hour)
        self.fatal: DeliveryError | None = None
        self.context = tls_context(settings)
        # until one connection has logged in, connections open one at a time: a wrong password or an
        # untrusted certificate is tried once, not once per connection (relays lock out repeated failures)
        self._gate = threading.Lock()
        self._proven = False
        self.n = max(1, connections or settings.connections)
        self.ready = 0  # connections open now
        self.last_progress = time.monotonic()  # last open connection or answer about a recipient
        self.failed_opens = 0  # connections that could not open since last_progress
        self.last_trouble: str | None = None  # the last deferral, for the report
        self.threads = [threading.Thread(target=self._work, name=f"smtp-{i}", daemon=True) for i in range(self.n)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def submit(self, jobs: list[Job]) -> None:
        """Queue jobs in chunks, spread over the connections."""
        size = max(1, min(CHUNK, -(-len(jobs) // self.n)))
        with self._cond:
            for i in range(0, len(jobs), size):
                self._jobs.append(jobs[i:i + size])
            self._cond.notify_all()

    def give_up(self) -> None:
        """No connection could open for too long: stop taking work (queued jobs come back from close())."""
        self._halt.set()
        with self._cond:
            self._cond.notify_all()

    def close(self) -> list[Job]:
        """Let the workers finish the message they hold and exit; returns the jobs never started."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        for t in self.threads:
            t.join()
        left = [j for chunk in self._jobs for j in chunk]
        self._jobs.clear()
        return left

    # -- workers -----------------------------------------------------------------------------------

    def _halted(self) -> bool:
        return self.stop.is_set() or self._halt.is_set() or self.fatal is not None

    def _sleep(self, seconds: float) -> bool:
        """Wait (a pause, a rate limit); True when the pool was halted or closed meanwhile."""
        end = time.monotonic() + seconds
        while not (self._halted() or self._closing):
            left = end - time.monotonic()
            if left <= 0:
                return False
            self.stop.wait(min(left, 0.1))
        return True

    def _take(self) -> list[Job] | None:
        with self._cond:
            while not self._jobs:
                if self._closing or self._halted():
                    return None
                self._cond.wait(0.1)
            if self._halted():
                return None
            return self._jobs.popleft()

    def _work_waiting(self) -> bool:
        """Wait until some chunk is queued; False when the pool closes or halts first."""
        with self._cond:
            while not self._jobs:
                if self._closing or self._halted():
                    return False
                self._cond.wait(0.1)
            return not self._halted()

    def _put_back(self, jobs: list[Job]) -> None:
        if jobs:
            with self._cond:
                self._jobs.appendleft(jobs)  # first in line: they were taken first
                self._cond.notify()

    def _post(self, out: list[Result]) -> None:
        if out:
            self.results.append(list(out))
            out.clear()
            self.result_ready.set()

    def _fail(self, exc: DeliveryError) -> None:
        if self.fatal is None:
            self.fatal = exc
        with self._cond:
            self._cond.notify_all()

    def _work(self) -> None:
        conn = Connection(self.settings, self.password, self.context)
        pause, streak = 0.0, 0  # streak: sessions in a row that could not open or got no answer
        try:
            while not self._closing or self._jobs:
                if self._halted():
                    return
                if not conn.ready:
                    if pause and self._sleep(pause):
                        return
                    if not self._work_waiting():  # open a session only when there is mail for it
                        return
                    try:
                        failed = self._open(conn)
                    except DeliveryError as exc:  # login, TLS: nothing can go until the settings change
                        self._fail(exc)
                        return
                    if failed is not None:
                        streak += 1
                        pause = _pause(streak, failed.wait)
                        self._note_trouble(failed, opened=False)
                        continue
                    with self._cond:
                        self.ready += 1
                        self.last_progress, self.failed_opens = time.monotonic(), 0
                chunk = self._take()
                if chunk is None:
                    return
                try:
                    left, reply = self._run(conn, chunk)
                finally:
                    if not conn.ready:
                        with self._cond:
                            self.ready -= 1
                self._put_back(left)
                if not conn.ready:
                    # a session that ended (421, a drop): reopen at once if it had been working (a cap of
                    # messages per connection), else pause longer each time; its work goes to the others
                    wait = reply.wait if reply is not None else None
                    streak = 0 if conn.answered else streak + 1
                    pause = _pause(streak, wait) if streak else (wait or 0.0)
        finally:
            if conn.ready:
                with self._cond:
                    self.ready -= 1
            conn.close()

    def _note_trouble(self, reply: Reply, opened: bool) -> None:
        with self._cond:
            self.last_trouble = reply.line()
            if not opened:
                self.failed_opens += 1

    def _open(self, conn: Connection) -> Reply | None:
        if self._proven:
            return conn.open()
        with self._gate:
            if self._halted():
                return None if conn.ready else Reply(Outcome.DEFER, None, "stopped")
            failed = conn.open()  # a DeliveryError here is set as fatal before the gate opens
            self._proven = failed is None
            return failed

    def _run(self, conn: Connection, chunk: list[Job]) -> tuple[list[Job], Reply | None]:
        """Send a chunk on one connection; returns (jobs to put back for another try, the last deferral).

        While the server works on one step, the next message's bytes are built: with PIPELINING the
        wait for a reply is the only thing on the critical path."""
        out: list[Result] = []
        posted = time.monotonic()
        envelope_for: Job | None = None  # the job whose envelope went out with the previous message
        built: dict[Job, tuple[bytes, str]] = {}
        last_defer = None

        def build(job: Job) -> Callable[[], None]:
            def ahead() -> None:
                try:
                    built[job] = self.build(job)
                except Exception:  # noqa: BLE001 - built again where it is sent, where a bug costs one recipient
                    pass
            return ahead

        i = 0
        try:
            while i < len(chunk):
                job = chunk[i]
                if envelope_for is not job and (self._halted() or not self.limit.wait(self._sleep)):
                    return chunk[i:], None
                wired = False
                try:
                    refused = conn.begin(self.sender, job.target, sent=envelope_for is job, meanwhile=build(job))
                    envelope_for = None
                    if refused is not None:
                        i += 1
                        last_defer = self._answer(job, refused, "", out, conn) or last_defer
                        if not conn.ready:
                            return chunk[i:], last_defer
                        continue
                    if self._halted():  # stopped while the envelope was out: send nothing more
                        conn.abort()
                        return chunk[i:], None
                    data, mid = built.pop(job, None) or self.build(job)
                    nxt, meanwhile = b"", None
                    if conn.pipelining and i + 1 < len(chunk) and not self._halted() and self.limit.now_free():
                        envelope_for = chunk[i + 1]
                        nxt, meanwhile = conn.envelope(self.sender, envelope_for.target), build(envelope_for)
                    try:
                        self.on_wire(job.target)  # the journal's W line: before a single byte of the message
                    except OSError as exc:
                        conn.abort()  # DATA is open: dropping the connection is how to send nothing
                        self._fail(_disk_full(exc) if exc.errno in DISK_FULL else DeliveryError(f"email: cannot write the wire journal ({exc})"))
                        return chunk[i:], None
                    wired = True
                    reply = conn.finish(data, nxt, meanwhile)
                except _Lost as lost:
                    envelope_for = None
                    i += 1
                    last_defer = self._answer(job, lost.reply, "", out, conn) or last_defer
                    return chunk[i:], last_defer
                except DeliveryError as exc:  # a 530 or our sender refused: the settings' fault, nothing sent
                    envelope_for = None
                    self._fail(exc)
                    return chunk[i:], None
                except Exception as exc:  # a bug costs one recipient, never the send
                    envelope_for = None
                    conn.abort()
                    i += 1
                    self._answer(job, Reply(Outcome.UNKNOWN if wired else Outcome.FAILED, None,
                                            f"internal error: {exc.__class__.__name__}: {exc}"[:300]), "", out, conn)
                    return chunk[i:], None
                i += 1
                last_defer = self._answer(job, reply, mid, out, conn) or last_defer
                if not conn.ready:  # a 421 after the message
                    return chunk[i:], last_defer
                if len(out) >= 8 or time.monotonic() - posted > 0.1:
                    self._post(out)
                    posted = time.monotonic()
            return [], last_defer
        finally:
            if envelope_for is not None and conn.ready:
                conn.abort()  # an envelope with nothing to follow: the server discards it
            self._post(out)

    def _answer(self, job: Job, reply: Reply, mid: str, out: list[Result], conn: Connection) -> Reply | None:
        """Route one reply: a deferral goes back on the queue (or to the ledger after MAX_DEFERS)."""
        if reply.outcome is Outcome.DEFER:
            self._note_trouble(reply, opened=True)
            again = replace(job, defers=job.defers + 1)
            if again.defers < MAX_DEFERS:
                with self._cond:
                    self._jobs.append([again])
                    self._cond.notify()
                return reply
            job = again
        else:
            self.last_progress = time.monotonic()
            conn.answered += 1
        try:
            self.on_reply(job, reply, mid)  # the journal's R line
        except OSError as exc:  # the outcome is known and goes to the ledger; no more work is taken
            self._fail(_disk_full(exc) if exc.errno in DISK_FULL else DeliveryError(f"email: cannot write the wire journal ({exc})"))
        out.append((job, reply, mid))
        return reply if reply.outcome is Outcome.DEFER else None


def _pause(streak: int, wait: float | None) -> float:
    """Seconds before reopening after `streak` failed sessions in a row; a 421's own wait wins."""
    return min(max(wait or 0.0, FIRST_PAUSE * 2 ** (streak - 1)), max(MAX_PAUSE, wait or 0.0))


def _disk_full(exc: OSError) -> DiskFullError:
    where = f" {exc.filename}" if exc.filename else ""
    return DiskFullError(f"disk full: cannot write the wire journal{where} ({exc.strerror or exc})",
                         hint="free space on that disk, then rerun the same command")


def send_one(settings: SmtpSettings, sender: str, rcpt: str, data: bytes) -> Reply:
    """One message on its own connection (test copies)."""
    conn = Connection(settings, password_for(settings))
    failed = conn.open()
    if failed is not None:
        return failed
    try:
        return conn.send(sender, rcpt, data)
    finally:
        conn.close()
