"""Many messages over a few SMTP connections, from one thread: the data phase of a send.

Each open connection is a non-blocking socket in one selector, driven by the caller's thread through
`Pool.step()`: no lock, no hand-off between threads per message. Connections are opened (connect,
TLS, login: publisher/channels/email/smtp.py, with smtplib) in short-lived threads that hand the ready socket over.

Speed. The message bytes come ready for the wire (CRLF, no line starting with "."), and the end of
data `.` goes out in the same write as the body: a small write of its own waits for the server's
delayed ACK (Nagle), ~40 ms a message. When the relay offers PIPELINING (RFC 2920), MAIL, RCPT and
DATA go out together, and the next message's envelope travels with the previous message's end of
data: one round trip per message.

Attempts. Only an answer about a recipient (its RCPT, or its message) is an attempt. A refused
connection, a 421, a drop before the message left or a 4xx to MAIL sends the message to the back of
the queue for another connection (MAX_DEFERS times in one run, then it waits in the ledger), and the
connection pauses without taking work: 1 s doubling to 30 s, or the 421's wait; a session the relay
ends after it had worked (a cap of messages per connection) is reopened at once.

The journal. Before a message's first byte leaves, its W line is written; its R line follows the
reply, in the same write() as the next W line (or at the end of the step): see publisher/channels/email/journal.py.
"""

from __future__ import annotations

import collections
import selectors
import socket
import threading
import time
from dataclasses import replace
from typing import Callable, Protocol

from publisher.channels.email.journal import journal_error
from publisher.channels.email.session import Job, Lost, Session, Slot
from publisher.channels.email.smtp import (
    SESSION_REFUSED,
    Connection,
    RateLimit,
    Reply,
    SmtpOutcome,
    _text,
    classify,
    envelope,
    tls_context,
)
from publisher.config import SmtpSettings
from publisher.errors import DeliveryError

MAX_DEFERS = 3  # a recipient deferred this often in one run (421s, drops) waits in the ledger instead
FIRST_PAUSE, MAX_PAUSE = 1.0, 30.0  # seconds a connection waits before reopening (doubling), unless told


Builder = Callable[[Job], tuple[bytes, str]]  # job -> (message bytes, Message-ID)
Result = tuple[Job, Reply, str]  # (job, reply, Message-ID)


class JournalLike(Protocol):
    """What the pool needs of publisher.channels.email.journal.Journal: the W/R lines, and one write() for several."""

    def wire_line(self, target: str) -> bytes: ...
    def result_line(self, target: str, outcome: str, remote_id: str | None, reply: str) -> bytes: ...
    def write(self, lines: bytes) -> None: ...


class Pool:
    """Sends jobs over up to `connections` SMTP sessions. Drive it with `step()`; `close()` when done.

    `step()` returns the results that came in: (job, reply, Message-ID) with reply SENT, RETRY (an attempt),
    FAILED, UNKNOWN, or DEFER (deferred MAX_DEFERS times: the ledger waits). `close()` returns the jobs
    that never left (stopped, fatal error, given up), to go back to `planned` without an attempt.
    """

    def __init__(self, settings: SmtpSettings, password: str | None, sender: str, build: Builder, *,
                 stop: threading.Event, journal: JournalLike, connections: int | None = None,
                 sender_for: Callable[[str], str] | None = None):
        self.settings, self.password, self.sender, self.build = settings, password, sender, build
        # the envelope sender of each recipient's copy: a VERP return path names its recipient
        self.sender_for: Callable[[str], str] = sender_for or (lambda target: sender)
        self.stop, self.journal = stop, journal
        self.queue: collections.deque[Job] = collections.deque()
        self.results: list[Result] = []
        self.unstarted: list[Job] = []
        self.limit = RateLimit(settings.rate_per_second, settings.rate_per_hour)
        self.fatal: DeliveryError | None = None
        self.context = tls_context(settings)
        self.selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._opened: collections.deque[tuple[Slot, Connection, object]] = collections.deque()
        self._proven = False  # one connection logged in: the others may open at once
        self._halt = False  # give_up() or close(): no new message starts
        self.slots = [Slot(i) for i in range(max(1, connections or settings.connections))]
        self._open_lock = threading.Lock()
        self._closed = False
        self._r_lines: list[bytes] = []  # R lines not yet written (they go with the next W line)
        self.last_progress = time.monotonic()  # last open connection or answer about a recipient
        self.failed_opens = 0  # connections that could not open since last_progress
        self.last_trouble: str | None = None  # the last deferral, for the report

    # -- what the caller sees ----------------------------------------------------------------------

    @property
    def ready(self) -> int:
        """Sessions open now."""
        return sum(1 for s in self.slots if s.session is not None)

    def submit(self, jobs: list[Job]) -> None:
        self.queue.extend(jobs)

    def halted(self) -> bool:
        return self._halt or self.stop.is_set() or self.fatal is not None

    def give_up(self) -> None:
        """No connection could open for too long: start nothing more (queued jobs come back from close())."""
        self._halt = True

    def step(self, timeout: float) -> list[Result]:
        """Open what is needed, start what may start, wait up to `timeout` for the sockets, handle what came."""
        now = time.monotonic()
        self._open_slots(now)
        wait = timeout
        for slot in self.slots:
            if slot.session is not None and not slot.session.waiting:
                wait = min(wait, self._start(slot.session, now))
            elif slot.session is None and not slot.opening and self.queue and not self.halted():
                wait = min(wait, max(slot.reopen_at - now, 0.0))
        for key, events in self.selector.select(max(wait, 0.0)):
            if key.data is None:
                self._adopt()
                continue
            session: Session = key.data
            try:
                if events & selectors.EVENT_WRITE:
                    session.flush()
                if events & selectors.EVENT_READ:
                    replies, ended = session.read()
                    for code, text in replies:  # what came before a hang-up still counts (a 250, then 421)
                        session.deadline = time.monotonic() + session.timeout
                        self._reply(session, code, text)
                        if session.conn.smtp is None:
                            break
                    if ended and session.conn.smtp is not None:
                        raise Lost(ended)
            except Lost as exc:
                self._lost(session, str(exc))
            self._watch(session)
        now = time.monotonic()
        for slot in self.slots:
            s = slot.session
            if s is not None and s.waiting and now > s.deadline:
                self._lost(s, f"no reply within [smtp].timeout = {self.settings.timeout:g}s")
        self._write_r_lines()
        results, self.results = self.results, []
        return results

    def close(self, grace: float | None = None) -> list[Job]:
        """Finish the messages on the wire (up to [smtp].timeout), hang up, return the jobs never started."""
        self._halt = True
        end = time.monotonic() + (self.settings.timeout if grace is None else grace)
        while any(s.session is not None and s.session.waiting for s in self.slots) and time.monotonic() < end:
            self.results += self.step(0.05)
        for slot in self.slots:
            if slot.session is not None:
                self._end(slot.session, quit=True)
        self._write_r_lines()
        left, self.unstarted = [*self.unstarted, *self.queue], []
        self.queue.clear()
        with self._open_lock:
            self._closed = True
            for _, conn, _ in self._opened:
                conn.close()
            self._opened.clear()
        self.selector.close()
        self._wake_r.close()
        self._wake_w.close()
        return left

    def drain(self) -> list[Result]:
        results, self.results = self.results, []
        return results

    # -- opening -------------------------------------------------------------------------------------

    def _open_slots(self, now: float) -> None:
        if self.halted() or not self.queue:  # a session is opened only when there is mail for it
            return
        for slot in self.slots:
            if slot.session is None and not slot.opening and now >= slot.reopen_at:
                if not self._proven and any(s.opening for s in self.slots):
                    return  # until one has logged in, one at a time: a wrong password is tried once
                slot.opening = True
                threading.Thread(target=self._opener, args=(slot,), name="smtp-open", daemon=True).start()

    def _opener(self, slot: Slot) -> None:
        conn = Connection(self.settings, self.password, self.context)
        try:
            outcome: object = conn.open()
        except DeliveryError as exc:
            outcome = exc
        except Exception as exc:  # noqa: BLE001 - a bug while opening is one failed connection, not a hang
            outcome = Reply(SmtpOutcome.DEFER, None, f"cannot connect: {exc.__class__.__name__}: {exc}"[:300])
        with self._open_lock:
            if self._closed:  # the pool closed meanwhile
                conn.close()
                return
            self._opened.append((slot, conn, outcome))
            self._wake_w.send(b"x")

    def _adopt(self) -> None:
        try:
            self._wake_r.recv(4096)
        except BlockingIOError:
            pass
        while self._opened:
            slot, conn, outcome = self._opened.popleft()
            slot.opening = False
            if isinstance(outcome, DeliveryError):
                self.fatal = self.fatal or outcome
            elif isinstance(outcome, Reply):
                slot.streak += 1
                slot.reopen_at = time.monotonic() + _pause(slot.streak, outcome.wait)
                self.failed_opens += 1
                self.last_trouble = outcome.line()
            elif self.halted():
                conn.close()
            else:
                self._proven = True
                self.last_progress, self.failed_opens = time.monotonic(), 0
                session = Session(conn, slot.index, self.settings.timeout)
                slot.session = session
                self.selector.register(session.sock, selectors.EVENT_READ, session)

    # -- the transaction -------------------------------------------------------------------------------

    def _start(self, s: Session, now: float) -> float:
        """Send the next envelope on an idle session; returns how long until it may (rate limit), or inf."""
        if not self.queue or self.halted():
            return float("inf")
        wait = self.limit.take(now)
        if wait:
            return wait
        try:
            job = self.queue.popleft()
        except IndexError:  # another pool's thread took the last one
            return float("inf")
        try:
            self._envelope(s, job)
        except Lost as exc:
            self._lost(s, str(exc))
        self._watch(s)
        return float("inf")

    def _envelope(self, s: Session, job: Job) -> None:
        s.envelope = []
        s.deadline = time.monotonic() + s.timeout
        if s.pipelining:
            s.write(envelope(self.sender_for(job.target), job.target))
            s.waiting.extend((("MAIL", job, ""), ("RCPT", job, ""), ("DATA", job, "")))
        else:
            s.write(envelope(self.sender_for(job.target), job.target).split(b"\r\n", 1)[0] + b"\r\n")
            s.waiting.append(("MAIL", job, ""))

    def _reply(self, s: Session, code: int, text: bytes) -> None:
        kind, job, mid = s.waiting.popleft()
        if kind in ("RSET", "DOT"):
            if code == 421:
                self._end(s, quit=False)
        elif kind == "END":
            self._answer(s, job, classify(code, text, "end of DATA"), mid)
            if code == 421:
                self._end(s, quit=False)
        else:
            s.envelope.append((code, text))
            if not s.pipelining and kind != "DATA" and code in (250, 251):  # one command at a time: the next one
                s.write(envelope(self.sender_for(job.target), job.target).split(b"\r\n")[1 if kind == "MAIL" else 2] + b"\r\n")
                s.waiting.append(("RCPT" if kind == "MAIL" else "DATA", job, ""))
                return
            if kind != "DATA" and s.pipelining:
                return  # the rest of the envelope's replies are on their way
            self._envelope_done(s, job)
        if self.slots[s.slot].session is s and not s.waiting:
            self._start(s, time.monotonic())  # idle again: the next message at once

    def _envelope_done(self, s: Session, job: Job) -> None:
        (mail, mail_text), *rest = s.envelope
        rcpt, rcpt_text = rest[0] if rest else (0, b"")
        data, data_text = rest[1] if len(rest) > 1 else (0, b"")
        if mail in SESSION_REFUSED:  # every recipient would get it: a settings problem, not theirs
            self._fatal(s, job, DeliveryError(f"email: {s.conn.where} refused mail before TLS or login ({mail} {_text(mail_text)})",
                                              hint="check [smtp].security and [smtp].username, then rerun the same"
                                                   " command (sent mail is skipped)"))
            return
        if 500 <= mail < 600:  # our own address refused: every recipient would get it too
            self._fatal(s, job, DeliveryError(f"email: {s.conn.where} refused the sender address {self.sender} ({mail} {_text(mail_text)})",
                                              hint="check [email].from (the relay may only accept addresses of your"
                                                   " account), then rerun the same command (sent mail is skipped)"))
            return
        if mail == 250 and rcpt in (250, 251) and data == 354:
            self._message(s, job)
            return
        if mail != 250:
            refused = classify(mail, mail_text, "MAIL FROM")
        elif rcpt not in (250, 251):
            refused = classify(rcpt, rcpt_text, "RCPT TO")
        else:
            refused = classify(data, data_text, "DATA")
        self._answer(s, job, refused, "")
        if data == 354:  # a relay that took DATA without a recipient: end it empty, ignore its answer
            s.write(b".\r\n")
            s.waiting.append(("DOT", None, ""))
        if 421 in (mail, rcpt, data):  # the server is closing this session
            self._end(s, quit=False)
            return
        s.write(b"RSET\r\n")
        s.waiting.append(("RSET", None, ""))
        if s.pipelining:  # RSET and the next envelope may travel together (RFC 2920)
            self._start(s, time.monotonic())

    def _message(self, s: Session, job: Job) -> None:
        if self.halted():  # stopped while the envelope was out: hanging up is how to send nothing
            self.unstarted.append(job)
            self._end(s, quit=False)
            return
        try:
            data, mid = self.build(job)
        except Exception as exc:  # noqa: BLE001 - a bug costs one recipient, never the send
            self._answer(s, job, Reply(SmtpOutcome.FAILED, None, f"internal error: {exc.__class__.__name__}: {exc}"[:300]), "")
            self._end(s, quit=False)  # DATA is open: hanging up is how to send nothing
            return
        try:  # the journal's W line (with the R lines due), before a single byte of the message
            self.journal.write(b"".join([*self._r_lines, self.journal.wire_line(job.target)]))
            self._r_lines.clear()
        except OSError as exc:
            self.fatal = self.fatal or journal_error(exc)
            self.unstarted.append(job)
            self._end(s, quit=False)  # DATA is open: dropping the connection sends nothing
            return
        then, nxt = b"", None
        if s.pipelining and self.queue and not self.halted() and self.limit.take(time.monotonic()) == 0:
            try:
                nxt = self.queue.popleft()
                then = envelope(self.sender_for(nxt.target), nxt.target)
            except IndexError:
                pass
        s.waiting.append(("END", job, mid))
        if nxt is not None:
            s.envelope = []
            s.waiting.extend((("MAIL", nxt, ""), ("RCPT", nxt, ""), ("DATA", nxt, "")))
        s.deadline = time.monotonic() + s.timeout
        s.write(data, b".\r\n", then)

    # -- outcomes -----------------------------------------------------------------------------------

    def _answer(self, s: Session | None, job: Job, reply: Reply, mid: str) -> None:
        """Route one outcome: a deferral goes back on the queue (or to the ledger after MAX_DEFERS)."""
        if reply.outcome is SmtpOutcome.DEFER:
            self.last_trouble = reply.line()
            job = replace(job, defers=job.defers + 1)
            if job.defers < MAX_DEFERS:
                self.queue.append(job)
                return
        else:
            self.last_progress = time.monotonic()
            if s is not None:
                s.answered += 1
        self._r_lines.append(self.journal.result_line(job.target, reply.outcome.value, mid, reply.line()))
        self.results.append((job, reply, mid))

    def _lost(self, s: Session, why: str) -> None:
        """The socket failed: the message on the wire is unknown, the envelopes waiting are deferred."""
        seen: set[int] = set()
        for kind, job, _ in list(s.waiting):
            if job is None or id(job) in seen:
                continue
            seen.add(id(job))
            if kind == "END":
                self._answer(s, job, Reply(SmtpOutcome.UNKNOWN, None,
                                           f"connection lost ({why}) after the message was sent; outcome unknown"[:300]), "")
            else:
                self._answer(s, job, Reply(SmtpOutcome.DEFER, None, f"connection lost ({why}) before the message was accepted"[:300]), "")
        s.waiting.clear()
        self._end(s, quit=False)

    def _fatal(self, s: Session, job: Job, exc: DeliveryError) -> None:
        self.fatal = self.fatal or exc
        self.unstarted.append(job)
        for _, other, _ in s.waiting:
            if other is not None and other is not job and other not in self.unstarted:
                self.unstarted.append(other)
        s.waiting.clear()
        self._end(s, quit=False)

    def _end(self, s: Session, quit: bool) -> None:
        """Close a session; its slot reopens at once if it had been working, else after a growing pause."""
        if s.waiting:  # jobs it still held never got an answer
            self._lost(s, "closed")
            return
        slot = self.slots[s.slot]
        if slot.session is s:
            slot.session = None
            try:
                self.selector.unregister(s.sock)
            except (KeyError, ValueError):
                pass
            s.hang_up(quit)
            slot.streak = 0 if s.answered else slot.streak + 1
            slot.reopen_at = time.monotonic() + (_pause(slot.streak, None) if slot.streak else 0.0)

    def _watch(self, s: Session) -> None:
        """Ask for EVENT_WRITE while the session has bytes the socket has not taken yet."""
        if self.slots[s.slot].session is not s:
            return
        want = bool(s.out)
        if want != s.wants_write:
            s.wants_write = want
            self.selector.modify(s.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if want else 0), s)

    def _write_r_lines(self) -> None:
        if self._r_lines:
            try:
                self.journal.write(b"".join(self._r_lines))
            except OSError as exc:  # the outcomes are known and go to the ledger; no more work is taken
                self.fatal = self.fatal or journal_error(exc)
            self._r_lines.clear()


def _pause(streak: int, wait: float | None) -> float:
    """Seconds before reopening after `streak` failed sessions in a row; a 421's own wait wins."""
    return min(max(wait or 0.0, FIRST_PAUSE * 2 ** (streak - 1)), max(MAX_PAUSE, wait or 0.0))


