"""The one place smtplib is called: connections, a pool of sending threads, a rate limit, and reply meanings.

What a reply means for the ledger:
    250 after DATA                      -> sent
    4xx at any step, or a connection that drops before DATA's end was sent -> retry later (421: its wait)
    5xx                                 -> failed for that recipient (550/551/553: hard bounce, suppressed)
    the connection drops after the message was sent, before the reply -> unknown (never retried blindly)

The message bytes come ready for the wire (CRLF, no line starting with "."), so DATA sends them as
they are instead of running smtplib's dot-stuffing regexes over every copy.

Some failures are the settings' fault, not the recipient's, and no retry can fix them: a refused
login, a certificate we cannot trust, a TLS handshake that fails, a server without STARTTLS or AUTH,
a 530 "authentication/TLS required" at MAIL FROM. Those raise DeliveryError; the pool stops and
every message not yet on the wire stays `planned` for the rerun. TLS always verifies the server's
certificate and host name, against the system trust store or against [smtp].ca_file only
(publisher/smtp_security.py).
"""

from __future__ import annotations

import enum
import queue
import re
import smtplib
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Callable

from publisher.config import SmtpSettings
from publisher.errors import DeliveryError
# password_for is also imported from here by the email channel
from publisher.smtp_security import PASSWORD_ENV, RERUN, certificate_error, password_for, scrub, tls_context

HARD_BOUNCE_CODES = (550, 551, 553)
SESSION_REFUSED = (530, 538)  # at MAIL FROM: "authentication required" / "encryption required": our settings


class Outcome(str, enum.Enum):
    SENT = "sent"
    RETRY = "retry"
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


_WAIT = re.compile(r"(\d+)\s*(seconds?|secs?|s\b|minutes?|mins?|m\b)", re.I)


def _text(msg: bytes | str) -> str:
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    return " ".join(msg.split())[:300]


def classify(code: int, msg: bytes | str, step: str) -> Reply:
    """The meaning of an SMTP reply to MAIL, RCPT or DATA."""
    text = _text(msg)
    if 200 <= code < 400:
        return Reply(Outcome.SENT, code, text)
    if 400 <= code < 500:
        wait = None
        if code == 421 and (m := _WAIT.search(text)):
            wait = float(m.group(1)) * (60 if m.group(2).lower().startswith("m") else 1)
        return Reply(Outcome.RETRY, code, f"{step}: {text}", wait)
    return Reply(Outcome.FAILED, code, f"{step}: {text}")


class Connection:
    """One SMTP session, reused for many messages."""

    def __init__(self, settings: SmtpSettings, password: str | None, context: ssl.SSLContext | None = None):
        self.s, self.password = settings, password
        self.context = context or tls_context(settings)  # one per pool: loading the trust store costs
        self.smtp: smtplib.SMTP | None = None
        self.sent_here = 0

    def open(self) -> Reply | None:
        """Connect, secure and log in; a Reply (retry) when the server cannot be reached, None when ready.

        Raises DeliveryError for what only a change of settings can fix (see the module docstring).
        """
        s = self.s
        where = f"{s.host}:{s.port}"
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
        except smtplib.SMTPAuthenticationError as exc:
            self.close()
            raw = exc.smtp_error
            said = scrub(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw), s.username, self.password)
            if 400 <= exc.smtp_code < 500:  # 454 "temporary authentication failure": the relay's trouble
                return classify(exc.smtp_code, said, "login")
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
            return Reply(Outcome.RETRY, None, f"{step}: {where} closed the connection during the TLS handshake ({exc})"[:300])
        except ssl.SSLError as exc:
            self.close()
            raise DeliveryError(f"email: TLS handshake with {where} failed ({exc.reason or exc}) with [smtp].security = {s.security!r}",
                                hint="check [smtp].security and [smtp].port: 'tls' is TLS from the first byte (often"
                                     f" port 465), 'starttls' upgrades a plain session (often 587); {RERUN}") from None
        except smtplib.SMTPConnectError as exc:
            self.close()
            return classify(exc.smtp_code, exc.smtp_error, "connect") if exc.smtp_code >= 400 else \
                Reply(Outcome.RETRY, None, f"connect: {_text(exc.smtp_error)}")
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            said = scrub(str(exc), s.username, self.password)  # an error during AUTH may carry the server's echo
            return Reply(Outcome.RETRY, None, f"cannot connect to {where}: {exc.__class__.__name__}: {said}"[:300])
        self.sent_here = 0
        return None

    @property
    def ready(self) -> bool:
        return self.smtp is not None

    def send(self, sender: str, rcpt: str, data: bytes, on_wire: Callable[[], None]) -> Reply:
        """One message; `on_wire` is called just before the bytes go out (after that, a drop is `unknown`)."""
        smtp = self.smtp
        assert smtp is not None
        on_the_wire = False
        try:
            code, msg = smtp.mail(sender)
            if code in SESSION_REFUSED:  # every recipient would get it: a settings problem, not theirs
                self.close()
                where = f"{self.s.host}:{self.s.port}"
                raise DeliveryError(f"email: {where} refused mail before TLS or login ({code} {_text(msg)})",
                                    hint=f"check [smtp].security and [smtp].username, {RERUN}")
            if code != 250:
                return self._refused(classify(code, msg, "MAIL FROM"))
            code, msg = smtp.rcpt(rcpt)
            if code not in (250, 251):
                return self._refused(classify(code, msg, "RCPT TO"))
            code, msg = smtp.docmd("DATA")
            if code != 354:
                return self._refused(classify(code, msg, "DATA"))
            on_wire()
            on_the_wire = True
            smtp.send(data)
            smtp.send(b".\r\n")
            code, msg = smtp.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            why = f"connection lost ({exc.__class__.__name__}: {_text(str(exc))})"
            if on_the_wire:
                return Reply(Outcome.UNKNOWN, None, f"{why} after the message was sent; outcome unknown")
            return Reply(Outcome.RETRY, None, f"{why} before the message was accepted")
        reply = classify(code, msg, "end of DATA")
        if reply.outcome is Outcome.SENT:
            self.sent_here += 1
        elif code == 421:
            self.close()
        return reply

    def _refused(self, reply: Reply) -> Reply:
        if reply.code == 421:  # the server is closing this session
            self.close()
            return reply
        try:
            self.smtp.rset()
        except (OSError, smtplib.SMTPException):
            self.close()
        return reply

    def close(self) -> None:
        smtp, self.smtp = self.smtp, None
        if smtp is None:
            return
        try:
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

    def wait(self, stop: threading.Event) -> bool:
        """Block until the next message may go; False if `stop` was set meanwhile."""
        if self.gap <= 0:
            return not stop.is_set()
        with self._lock:
            now = time.monotonic()
            at = max(now, self._next)
            self._next = at + self.gap
        delay = at - time.monotonic()
        return not stop.wait(delay) if delay > 0 else not stop.is_set()


@dataclass(frozen=True)
class Job:
    target: str
    name: str
    attempts: int


Builder = Callable[[Job], tuple[bytes, str]]  # job -> (message bytes, Message-ID)


class Pool:
    """`connections` threads, each with its own reused SMTP connection, taking jobs from one queue.

    Results come back on `results` as (job, reply, message_id); a job a worker did not start (stop
    set, login refused) comes back with reply None, so the caller can put it back to `planned`.
    """

    def __init__(self, settings: SmtpSettings, password: str | None, sender: str, build: Builder, *,
                 stop: threading.Event, on_wire: Callable[[str], None], on_reply: Callable[[Job, Reply, str], None],
                 connections: int | None = None):
        self.settings, self.password, self.sender, self.build = settings, password, sender, build
        self.stop, self.on_wire, self.on_reply = stop, on_wire, on_reply
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self.results: queue.Queue[tuple[Job, Reply | None, str]] = queue.Queue()
        self.limit = RateLimit(settings.rate_per_second, settings.rate_per_hour)
        self.fatal: DeliveryError | None = None
        self.context = tls_context(settings)
        # until one connection has logged in, connections open one at a time: a wrong password or an
        # untrusted certificate is tried once, not once per connection (relays lock out repeated failures)
        self._gate = threading.Lock()
        self._proven = False
        self.n = max(1, connections or settings.connections)
        self.threads = [threading.Thread(target=self._work, name=f"smtp-{i}", daemon=True) for i in range(self.n)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def submit(self, job: Job) -> None:
        self.jobs.put(job)

    def close(self) -> None:
        """Let the workers finish what they hold and exit; jobs still queued come back unstarted."""
        for _ in self.threads:
            self.jobs.put(None)
        for t in self.threads:
            t.join()

    def _work(self) -> None:
        conn = Connection(self.settings, self.password, self.context)
        hold_until = 0.0  # after a 421 or a refused connection, this worker waits before reconnecting
        self._why = threading.local()
        try:
            while True:
                job = self.jobs.get()
                if job is None:
                    return
                if self.stop.is_set() or self.fatal is not None:
                    self.results.put((job, None, ""))
                    continue
                wired = [False]
                try:
                    reply = self._one(conn, job, hold_until, wired)
                except DeliveryError as exc:  # login, TLS or a 530: nothing of this job went out
                    self.fatal = exc
                    self.results.put((job, None, ""))
                    continue
                except Exception as exc:  # a bug must cost one recipient, never hang the send
                    conn.close()
                    reply = Reply(Outcome.UNKNOWN if wired[0] else Outcome.FAILED, None,
                                  f"internal error: {exc.__class__.__name__}: {exc}"[:300])
                    self.on_reply(job, reply, "")
                    self.results.put((job, reply, ""))
                    continue
                if reply is None:
                    continue
                if not conn.ready and reply.outcome is Outcome.RETRY and time.monotonic() >= hold_until:
                    hold_until = time.monotonic() + min(reply.wait or 1.0, 30.0)
                    self._why.text = reply.line()
        finally:
            conn.close()

    def _open(self, conn: Connection, job: Job) -> Reply | None:
        if self._proven:
            return conn.open()
        with self._gate:
            if self.fatal is not None or self.stop.is_set():
                self.results.put((job, None, ""))
                return None
            try:
                failed = conn.open()
            except DeliveryError as exc:
                self.fatal = exc  # set before the gate opens, so the next worker does not try again
                raise
            self._proven = failed is None
            return failed

    def _one(self, conn: Connection, job: Job, hold_until: float, wired: list[bool]) -> Reply | None:
        if not conn.ready:
            if time.monotonic() < hold_until:
                reply = Reply(Outcome.RETRY, None, getattr(self._why, "text", "waiting to reconnect to the SMTP server"))
                self.results.put((job, reply, ""))
                return reply
            failed = self._open(conn, job)
            if failed is None and not conn.ready:  # stopped, or another connection failed, while this one waited
                return None
            if failed is not None:
                self.results.put((job, failed, ""))
                return failed
        if not self.limit.wait(self.stop):
            self.results.put((job, None, ""))
            return None
        data, message_id = self.build(job)
        reused = conn.sent_here > 0

        def on_wire() -> None:
            wired[0] = True
            self.on_wire(job.target)

        reply = conn.send(self.sender, job.target, data, on_wire)
        if reply.outcome is Outcome.RETRY and reply.code is None and reused and conn.open() is None:
            # a reused connection the server had quietly closed: one immediate retry on a fresh one
            reply = conn.send(self.sender, job.target, data, on_wire)
        self.on_reply(job, reply, message_id)
        self.results.put((job, reply, message_id))
        return reply


def send_one(settings: SmtpSettings, sender: str, rcpt: str, data: bytes) -> Reply:
    """One message on its own connection (test copies)."""
    conn = Connection(settings, password_for(settings))
    failed = conn.open()
    if failed is not None:
        return failed
    try:
        return conn.send(sender, rcpt, data, lambda: None)
    finally:
        conn.close()

