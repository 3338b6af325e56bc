"""The email channel: the frozen edition to every subscriber of the campaign, exactly once, through the ledger.

Its settings are the top-level [email] table (EmailSettings) and the relay is [smtp]. Who gets the
edition: every subscriber on the campaign's list or on any of its series, once, minus the suppression
list. With `[publisher] delivery = "outbox"` each message is written as an .eml file instead, under
ledger channel "outbox:email", so a dry run never counts as a real send.

A live send, in one process holding the edition's lease:
1. settle rows a dead process left in `sending` (wire journal: sent / unknown / back to planned);
2. plan rows for new recipients, drop planned rows of addresses suppressed since;
3. claim batches of due rows, feed them to one thread per SMTP connection, record outcomes in
   batches; 4xx go back to `planned` with a backoff, and the run waits for them up to
   [smtp].retry_wait seconds before leaving them pending for the next run.
"""

from __future__ import annotations

import queue
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from publisher.channels import ChannelSpec, DispatchContext, DispatchReport
from publisher.config import Campaign, EmailSettings, Settings
from publisher.journal import Journal
from publisher.message import MessageTemplate, Recipient, build, unsubscribe_link
from publisher.models import RenderedEdition, State
from publisher.smtp import Job, Outcome, Pool, Reply, password_for, send_one
from publisher.store import iso
from publisher.subscribers import normalise_address, plan_recipients
from publisher.tokens import Signer, signer_from_env

BATCH = 256  # rows claimed, and outcomes recorded, per transaction
FLUSH_SECONDS = 0.25
LISTED = 20  # unknown addresses named in the report before "and N more"
LEASE_RENEW = 60.0  # seconds between renewals of pipeline.dispatch's 600 s lease on the edition


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9@._+-]", "_", text)


@dataclass
class _Edition:
    """What every recipient's copy of one edition is made from."""

    key: str
    template: MessageTemplate
    signer: Signer
    settings: Settings

    def message(self, email: str, name: str, message_id: str | None = None) -> tuple[bytes, str]:
        mid = message_id or self.template.message_id(email)
        link = unsubscribe_link(self.settings, self.signer.token(email))
        return self.template.personalise(Recipient(email=email, name=name, unsubscribe_url=link, message_id=mid)), mid


class EmailChannel:
    name = "email"

    def __init__(self, settings: Settings, ctx: DispatchContext):
        self.settings, self.ctx = settings, ctx
        self.live = ctx.outbox is None
        self.ledger_channel = "email" if self.live else "outbox:email"
        # fail before anything is planned when a secret is missing
        self.signer = signer_from_env(required=self.live)
        self.password = password_for(settings.smtp) if self.live else None

    # -- shared steps ----------------------------------------------------------------------------

    def _prepare(self, rendered: RenderedEdition, campaign: Campaign, journal: Journal, report: DispatchReport) -> _Edition:
        ctx, key, ch = self.ctx, rendered.edition.key, self.ledger_channel
        unknown, replanned = ctx.ledger.recover_journal(key, ch, journal)
        if unknown:
            report.messages.append(f"email {key}: {len(unknown)} message(s) were on the wire when a previous run stopped;"
                                   f" marked unknown: {_names(unknown)}")
        journal.clear()
        plan_recipients(ctx.ledger.store, key, ch, [campaign.list, *campaign.series], iso(ctx.ledger.clock()))
        ctx.ledger.drop_suppressed(key, ch)
        if ctx.resend_unknown:
            n = ctx.ledger.resend_unknown(key, ch)
            if n:
                report.messages.append(f"email {key}: resending {n} message(s) whose outcome was unknown (--resend-unknown)")
        counts = ctx.ledger.counts(key, ch)
        report.skipped = counts["sent"]
        return _Edition(key, build(rendered, campaign, self.settings, ctx.now), self.signer, self.settings)

    def _names(self, targets: list[str]) -> dict[str, str]:
        marks = ",".join("?" * len(targets))
        return dict(self.ctx.ledger.db.execute(f"SELECT email, name FROM subscribers WHERE email IN ({marks})", targets).fetchall())

    def _close_report(self, key: str, campaign: Campaign, report: DispatchReport) -> DispatchReport:
        counts = self.ctx.ledger.counts(key, self.ledger_channel)
        report.unknown = counts["unknown"]
        report.pending = counts["planned"] + counts["sending"]
        if report.unknown:
            rows = self.ctx.ledger.rows(key, self.ledger_channel, State.UNKNOWN)
            report.messages.append(f"email {key}: {report.unknown} unknown (maybe delivered): {_names([r.target for r in rows])};"
                                   f" resend them only with 'publisher send {campaign.name} --edition {key.split('/')[-1]} --resend-unknown'")
        return report

    def dispatch(self, rendered: RenderedEdition, campaign: Campaign) -> DispatchReport:
        """Send (or write to the outbox) the edition for every recipient not yet done."""
        report = DispatchReport(channel=self.ledger_channel, edition_key=rendered.edition.key)
        if self.live:
            return self._dispatch_live(rendered, campaign, report)
        return self._dispatch_outbox(rendered, campaign, report)

    # -- outbox ----------------------------------------------------------------------------------

    def _dispatch_outbox(self, rendered: RenderedEdition, campaign: Campaign, report: DispatchReport) -> DispatchReport:
        ctx, key, ch = self.ctx, rendered.edition.key, self.ledger_channel
        # writing a file twice is harmless, so rows a dead run left in `sending` simply go back to planned
        ed = self._prepare(rendered, campaign, Journal(None), report)
        folder = Path(ctx.outbox) / rendered.edition.campaign / rendered.edition.id / "email"
        folder.mkdir(parents=True, exist_ok=True)
        total = ctx.ledger.counts(key, ch)["planned"]
        cursor = ""
        with ctx.progress.task(f"outbox email {key}", total=total) as task:
            while not ctx.stop.is_set():
                rows = ctx.ledger.claim_range(key, ch, BATCH, cursor, ctx.ledger.clock())
                if not rows:
                    break
                cursor = rows[-1][0]
                names = self._names([t for t, _ in rows])
                done = []
                for target, _ in rows:
                    data, mid = ed.message(target, names.get(target, ""))
                    path = folder / f"{_slug(target)}.eml"
                    tmp = path.with_suffix(".tmp")
                    tmp.write_bytes(data)
                    tmp.replace(path)
                    done.append((target, State.SENT, mid, f"written to {path}"))
                ctx.ledger.finish(key, ch, done)
                report.sent += len(done)
                task.advance(len(done))
        if report.sent:
            report.messages.append(f"outbox: {report.sent} message(s) written to {folder}")
        return self._close_report(key, campaign, report)

    # -- live ------------------------------------------------------------------------------------

    def _dispatch_live(self, rendered: RenderedEdition, campaign: Campaign, report: DispatchReport) -> DispatchReport:
        ctx, key, ch, smtp = self.ctx, rendered.edition.key, self.ledger_channel, self.settings.smtp
        journal = Journal(self.settings.store_path.parent / "journal" / f"{_slug(key)}.{_slug(ch)}.log")
        ed = self._prepare(rendered, campaign, journal, report)
        journal.open()
        run = _Run(self, ed, journal, report)
        try:
            run.go(ctx.ledger.counts(key, ch)["planned"])
            if ctx.ledger.counts(key, ch)["sending"] == 0:
                journal.clear()  # every outcome is in the ledger now
        finally:
            journal.close()
        counts = ctx.ledger.counts(key, ch)  # report.pending is only filled in by _close_report
        pending = counts["planned"] + counts["sending"]
        if run.pool_fatal is not None:
            report.messages.append(str(run.pool_fatal))
        elif pending and not ctx.stop.is_set():
            # say why: a refused connection otherwise shows as a bare "14 pending"
            due = ctx.ledger.next_not_before(key, ch)
            when = f" after {due.astimezone(campaign.tz):%Y-%m-%d %H:%M %Z}" if due else ""
            why = f"last reply: {run.last_retry}; " if run.last_retry else ""
            report.messages.append(f"email {key}: {pending} message(s) left for a later run ({why}retries due later"
                                   f" than [smtp].retry_wait = {smtp.retry_wait:g}s); rerun 'publisher send {campaign.name}'{when}"
                                   f" (sent mail is skipped)")
        if ctx.stop.is_set():
            report.messages.append(f"email {key}: stopped; messages in flight were finished, the rest stay planned")
        return self._close_report(key, campaign, report)


class _Run:
    """One live send: the claim/submit/record loop of the main thread."""

    def __init__(self, channel: EmailChannel, ed: _Edition, journal: Journal, report: DispatchReport):
        self.c, self.ed, self.journal, self.report = channel, ed, journal, report
        self.ctx, self.ledger, self.key, self.ch = channel.ctx, channel.ctx.ledger, ed.key, channel.ledger_channel
        self.smtp = channel.settings.smtp
        self.t0 = time.monotonic()
        self.finished: list[tuple[str, State, str | None, str | None]] = []
        self.retries: list[tuple[str, datetime, str]] = []
        self.released: list[str] = []
        self.bounced: list[tuple[str, str]] = []
        self.last_flush = time.monotonic()
        self.pool_fatal = None
        self.last_retry: str | None = None  # the last 4xx or connection failure, for the report
        self.task = None

    def now(self) -> datetime:
        """The run's `now` moved on by the time spent sending: due times work with a fixed --now too."""
        return self.ctx.now + timedelta(seconds=time.monotonic() - self.t0)

    def go(self, total: int) -> None:
        ctx = self.ctx
        pool = Pool(self.smtp, self.c.password, self.ed.template.sender, self._build, stop=ctx.stop,
                    on_wire=self.journal.wire,
                    on_reply=lambda job, r, mid: self.journal.result(job.target, r.outcome.value, mid, r.line()))
        in_flight, cursor = 0, ""
        with ctx.progress.task(f"email {self.key}", total=total) as self.task:
            pool.start()
            try:
                renewed = time.monotonic()
                while True:
                    if time.monotonic() - renewed > LEASE_RENEW:  # a 100,000-recipient send outlasts the lease
                        self.ledger.store.renew_lease(f"send:{self.key}", self.ledger.clock(), ttl_seconds=600)
                        renewed = time.monotonic()
                    in_flight -= self._collect(pool, wait=in_flight >= 2 * BATCH)
                    if ctx.stop.is_set() or pool.fatal is not None:
                        break
                    if in_flight < BATCH:
                        rows = self.ledger.claim_range(self.key, self.ch, BATCH, cursor, self.now())
                        if rows:
                            cursor = rows[-1][0]
                            names = self.c._names([t for t, _ in rows])
                            for target, attempts in rows:
                                pool.submit(Job(target, names.get(target, ""), attempts))
                            in_flight += len(rows)
                            continue
                        if cursor:  # end of the pass: start over for retries that came due
                            cursor = ""
                            continue
                    if in_flight:
                        in_flight -= self._collect(pool, wait=True)
                        continue
                    self._flush()
                    nb = self.ledger.next_not_before(self.key, self.ch)
                    if nb is None:
                        break
                    delay = (nb - self.now()).total_seconds()
                    if delay > self.smtp.retry_wait:
                        break
                    ctx.stop.wait(min(max(delay, 0.01), 1.0))
            finally:
                pool.close()  # workers finish the message they hold; queued jobs come back unstarted
                while True:
                    got = self._collect(pool, wait=False)
                    if not got:
                        break
                self._flush()
        self.pool_fatal = pool.fatal

    def _build(self, job: Job) -> tuple[bytes, str]:
        return self.ed.message(job.target, job.name)

    def _collect(self, pool: Pool, wait: bool) -> int:
        n = 0
        try:
            item = pool.results.get(timeout=0.05) if wait else pool.results.get_nowait()
            while True:
                self._record(*item)
                n += 1
                item = pool.results.get_nowait()
        except queue.Empty:
            pass
        if len(self.finished) + len(self.retries) >= BATCH or time.monotonic() - self.last_flush >= FLUSH_SECONDS:
            self._flush()
        return n

    def _record(self, job: Job, reply: Reply | None, mid: str) -> None:
        if reply is None:
            self.released.append(job.target)
            return
        if reply.outcome is Outcome.RETRY:
            self.last_retry = reply.line()
            if job.attempts >= self.smtp.max_attempts:
                self.finished.append((job.target, State.FAILED, None, f"gave up after {job.attempts} attempts: {reply.line()}"))
                self.report.failed += 1
                self.task.advance()
            else:
                backoff = min(self.smtp.retry_backoff * 2 ** (job.attempts - 1), 3600.0)
                self.retries.append((job.target, self.now() + timedelta(seconds=max(backoff, reply.wait or 0.0)), reply.line()))
            return
        state = {Outcome.SENT: State.SENT, Outcome.FAILED: State.FAILED, Outcome.UNKNOWN: State.UNKNOWN}[reply.outcome]
        self.finished.append((job.target, state, mid or None, reply.line()))
        if state is State.SENT:
            self.report.sent += 1
        elif state is State.FAILED:
            self.report.failed += 1
            if reply.hard_bounce:
                self.bounced.append((job.target, reply.line()))
        self.task.advance()

    def _flush(self) -> None:
        if self.finished:
            self.ledger.finish(self.key, self.ch, self.finished)
        if self.retries:
            self.ledger.retry_later(self.key, self.ch, self.retries)
        if self.released:
            self.ledger.release(self.key, self.ch, self.released)
        if self.bounced:
            stamp = iso(self.ledger.clock())
            with self.ledger.store.transaction() as db:
                db.executemany("INSERT OR IGNORE INTO suppression (email, reason, detail, created_at) VALUES (?,?,?,?)",
                               [(t, "hard-bounce", why, stamp) for t, why in self.bounced])
        self.finished, self.retries, self.released, self.bounced = [], [], [], []
        self.last_flush = time.monotonic()


def _names(targets: list[str]) -> str:
    shown = ", ".join(targets[:LISTED])
    return shown + (f" and {len(targets) - LISTED} more (see 'publisher status')" if len(targets) > LISTED else "")


def make(settings: Settings, email_settings: EmailSettings, ctx: DispatchContext) -> EmailChannel:
    """The channel object for one dispatch."""
    return EmailChannel(settings, ctx)


def send_test(settings: Settings, campaign: Campaign, rendered: RenderedEdition, addresses: list[str], *,
              now: datetime) -> list[tuple[bool, str]]:
    """`publisher send --to ADDRESS`: [TEST] copies to seed addresses, without subscribers or ledger rows.

    One (done, line) per address: done is False when the copy was not sent or the address is bad."""
    live = settings.publisher.delivery == "live"
    ed = _Edition(rendered.edition.key, build(rendered, campaign, settings, now, subject_prefix="[TEST] "),
                  signer_from_env(required=False), settings)
    lines = []
    for text in addresses:
        try:
            email = normalise_address(text)
        except ValueError as exc:
            lines.append((False, f"test copy: {exc}"))
            continue
        data, mid = ed.message(email, "", message_id=ed.template.message_id(f"test.{now.timestamp()}.{email}"))
        if live:
            reply = send_one(settings.smtp, ed.template.sender, email, data)
            verdict = "sent" if reply.outcome is Outcome.SENT else f"NOT sent ({reply.outcome.value})"
            lines.append((reply.outcome is Outcome.SENT, f"test copy of {ed.key} to {email}: {verdict}: {reply.line()}"))
        else:
            folder = settings.path(settings.publisher.outbox) / rendered.edition.campaign / rendered.edition.id / "email-test"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{_slug(email)}.eml"
            path.write_bytes(data)
            lines.append((True, f"test copy of {ed.key} to {email}: written to {path} (delivery = \"outbox\")"))
    return lines


SPEC = ChannelSpec(name="email", kind="email", settings_cls=EmailSettings, factory=make)
