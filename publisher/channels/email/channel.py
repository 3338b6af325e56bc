"""The email channel's dispatch: the frozen edition to every subscriber, exactly once, through the ledger.

See the package docstring (publisher/channels/email/__init__.py) for the steps of a live send.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Callable

from publisher.channels import DispatchContext, DispatchReport
from publisher.channels.email.journal import Journal, Reserve, recover
from publisher.channels.email.dkim import DkimSigner
from publisher.channels.email.dkim import load as load_dkim
from publisher.channels.email.message import MessageTemplate, Recipient, build, mailto_uri, preferences_link, unsubscribe_link
from publisher.channels.email.pool import Job, Pool, Result
from publisher.channels.email.security import password_for
from publisher.channels.email.smtp import Reply, SmtpOutcome
from publisher.config import Campaign, EmailSettings, Settings
from publisher.errors import DeliveryError, DiskFullError
from publisher.feedback.tokens import TokenSigner, signers_from_env, tagged
from publisher.models import RenderedEdition, State
from publisher.store.backend import SQLITE
from publisher.store.db import iso
from publisher.store.feedback import edition_number, subscriber_ids
from publisher.store.subscribers import names_of, plan_recipients
from publisher.text import slug
from publisher.web.tokens import Signer

BATCH = 256  # rows claimed, and outcomes recorded, per transaction (SHARED_BATCH on PostgreSQL)
# A shared PostgreSQL store: a sender lost with its machine leaves what it claimed `unknown` (its wire
# journal, which would tell, is on that machine), so senders there claim less at a time.
SHARED_BATCH = 64
FLUSH_SECONDS = 0.25
LISTED = 20  # unknown addresses named in the report before "and N more"


@dataclass
class PreparedEdition:
    """What every recipient's copy of one edition is made from."""

    key: str
    template: MessageTemplate
    signer: Signer
    settings: Settings
    list_name: str  # the campaign's list: its one-click link unsubscribes from this campaign only
    # live sends only: the signed return path and mailto tokens, DKIM, and the clock for the Date header
    tokens: TokenSigner | None = None
    number: int = 0  # the edition's number in return paths (publisher/store/feedback.py)
    dkim: DkimSigner | None = None
    wall_clock: Callable[[], datetime] | None = None

    _date_cache: tuple[int, str] = field(default=(0, ""), init=False, repr=False)

    def _date(self) -> str:
        """The Date header's value for now, formatted once per second (it shows seconds)."""
        now = self.wall_clock()
        second = int(now.timestamp())
        if self._date_cache[0] != second:
            self._date_cache = (second, format_datetime(now.replace(microsecond=0)))
        return self._date_cache[1]

    def _token(self, kind: str, email: str, subscriber_id: int | None) -> str | None:
        if self.tokens is None or subscriber_id is None:
            return None  # a test copy (--to) or the outbox: nobody to name
        return self.tokens.token(kind, self.number, subscriber_id, self.key, email)

    def return_path(self, email: str, subscriber_id: int | None) -> str:
        """The envelope sender: `bounces+TOKEN@domain` with [email].return_path, else the From address."""
        base = self.settings.email.return_path
        token = self._token("b", email, subscriber_id) if base else None
        return tagged(parseaddr(base)[1], token) if token else (parseaddr(base)[1] if base else self.template.sender)

    def message(self, email: str, name: str, message_id: str | None = None, subscriber_id: int | None = None) -> tuple[bytes, str]:
        mid = message_id or self.template.message_id(email)
        mailto = self.settings.email.unsubscribe_mailto
        date = self._date() if self.wall_clock else ""
        leave, preferences = self.signer.links(email, self.list_name, "")
        data = self.template.personalise(Recipient(
            email=email, name=name, message_id=mid, date=date,
            unsubscribe_url=unsubscribe_link(self.settings, leave),
            preferences_url=preferences_link(self.settings, preferences),
            mailto=mailto_uri(mailto, self._token("u", email, subscriber_id)) if mailto else ""))
        return (self.dkim.sign(data) if self.dkim else data), mid


class EmailChannel:
    name = "email"

    def __init__(self, settings: Settings, ctx: DispatchContext):
        self.settings, self.ctx = settings, ctx
        self.live = ctx.outbox is None
        self.ledger_channel = "email" if self.live else "outbox:email"
        # fail before anything is planned when a secret or the DKIM key is missing
        self.tokens, self.signer = signers_from_env(required=self.live)
        self.password = password_for(settings.smtp) if self.live else None
        self.dkim = load_dkim(settings.email) if self.live else None

    # -- shared steps ----------------------------------------------------------------------------

    def _journal(self, key: str, holder: str | None) -> Journal:
        """The wire journal of one sender (None: a sender from before ids) on this machine."""
        name = f"{slug(key)}.{slug(self.ledger_channel)}" + (f".{holder}" if holder else "")
        return Journal(self.settings.state_dir / "journal" / f"{name}.log")

    def _prepare(self, rendered: RenderedEdition, campaign: Campaign, journal_of: Callable[[str | None], Journal],
                 report: DispatchReport) -> PreparedEdition:
        ctx, key, ch = self.ctx, rendered.edition.key, self.ledger_channel
        unknown, replanned = recover(ctx.ledger, key, ch, journal_of)
        if unknown:
            report.messages.append(f"email {key}: {len(unknown)} message(s) were on the wire when a previous run stopped;"
                                   f" marked unknown: {_names(unknown)}")
        plan_recipients(ctx.ledger.store, key, ch, [campaign.list, *campaign.series], iso(ctx.ledger.clock()))
        ctx.ledger.drop_suppressed(key, ch)
        if ctx.resend_unknown:
            n = ctx.ledger.resend_unknown(key, ch)
            if n:
                report.messages.append(f"email {key}: resending {n} message(s) whose outcome was unknown (--resend-unknown)")
        counts = ctx.ledger.counts(key, ch)
        report.skipped = counts["sent"]
        if not self.live:
            return PreparedEdition(key, build(rendered, campaign, self.settings, ctx.now), self.signer, self.settings,
                                   campaign.list.lower())
        return PreparedEdition(key, build(rendered, campaign, self.settings, ctx.now, live=True), self.signer, self.settings,
                               campaign.list.lower(), tokens=self.tokens, number=edition_number(ctx.ledger.store, key),
                               dkim=self.dkim, wall_clock=ctx.wall_clock)

    def _names(self, targets: list[str]) -> dict[str, str]:
        return names_of(self.ctx.ledger.store, targets)

    def _close_report(self, key: str, campaign: Campaign, report: DispatchReport) -> DispatchReport:
        counts = self.ctx.ledger.counts(key, self.ledger_channel)
        report.failed = counts["failed"]  # this run's and earlier ones': a rerun that finds them still says so
        report.unknown = counts["unknown"]
        elsewhere = self.ctx.ledger.held_elsewhere(key, self.ledger_channel)
        report.pending = counts["planned"] + counts["sending"] - elsewhere
        if elsewhere:
            report.messages.append(f"email {key}: {elsewhere} message(s) being sent by another sender of this edition (--join)")
        for holder, targets in self.ctx.ledger.orphans(key, self.ledger_channel).items():
            name = self.ctx.ledger.sender_name(holder)
            where = f" ({name})" if name else ""
            report.messages.append(f"email {key}: {len(targets)} message(s) were claimed by a sender that stopped{where}:"
                                   f" rerun 'publisher send {campaign.name}' on its machine to settle them from its wire"
                                   f" journal, or on another machine to mark them unknown")
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
        ed = self._prepare(rendered, campaign, lambda holder: Journal(None), report)
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
                    path = folder / f"{slug(target)}.eml"
                    tmp = path.with_suffix(".tmp")
                    tmp.write_bytes(data)
                    tmp.replace(path)
                    done.append((target, State.SENT, mid, f"written to {path}"))
                ctx.ledger.finish(key, ch, done, count_attempt=True)
                report.sent += len(done)
                task.advance(len(done))
        if report.sent:
            report.messages.append(f"outbox: {report.sent} message(s) written to {folder}")
        return self._close_report(key, campaign, report)

    # -- live ------------------------------------------------------------------------------------

    def _dispatch_live(self, rendered: RenderedEdition, campaign: Campaign, report: DispatchReport) -> DispatchReport:
        ctx, key, ch, smtp = self.ctx, rendered.edition.key, self.ledger_channel, self.settings.smtp
        folder = self.settings.state_dir
        journal = self._journal(key, ctx.ledger.holder)
        ed = self._prepare(rendered, campaign, lambda holder: self._journal(key, holder), report)
        reserve = Reserve(folder / "journal" / "reserve")
        run = _Run(self, ed, journal, report, reserve)
        try:
            reserve.take()  # before anything goes out: a disk already full stops here, with nothing sent
            journal.open()
            run.go(ctx.ledger.counts(key, ch)["planned"])
        except DiskFullError as exc:
            run.disk_full = run.disk_full or exc
        finally:
            journal.close()
        if run.disk_full is not None:
            reserve.release()  # the room to record what is known, at once
        try:
            # rows still in `sending` (a disk-full stop): settled now from the journal, as a restart would
            recover(ctx.ledger, key, ch, lambda holder: journal, own=True)
            if not ctx.ledger.sending(key, ch, ctx.ledger.holder):
                journal.remove()  # every outcome of this sender is in the ledger now
        except (DiskFullError, OSError) as exc:
            run.disk_full = run.disk_full or (exc if isinstance(exc, DiskFullError) else DiskFullError(f"disk full: {exc}"))
        reserve.release()
        counts = ctx.ledger.counts(key, ch)  # report.pending is only filled in by _close_report
        pending = counts["planned"] + counts["sending"] - ctx.ledger.held_elsewhere(key, ch)
        if run.disk_full is not None:
            report.error = (f"email {key}: {run.disk_full.message}; {report.sent} sent, {counts['unknown']} unknown, {pending} left for a"
                            f" later run; free space on the disk of {folder}, then rerun"
                            f" 'publisher send {campaign.name}' (sent mail is skipped)")
        elif run.pool_fatal is not None:
            report.messages.append(str(run.pool_fatal))
        elif counts["planned"] and not ctx.stop.is_set():
            # say why: a refused connection otherwise shows as a bare "14 pending"
            due = ctx.ledger.next_not_before(key, ch)
            when = f" after {due.astimezone(campaign.tz):%Y-%m-%d %H:%M %Z}" if due else ""
            why = f"last reply: {run.last_retry}; " if run.last_retry else ""
            report.messages.append(f"email {key}: {counts['planned']} message(s) left for a later run ({why}retries due later"
                                   f" than [smtp].retry_wait = {smtp.retry_wait:g}s); rerun 'publisher send {campaign.name}'{when}"
                                   f" (sent mail is skipped)")
        if ctx.stop.is_set():
            report.messages.append(f"email {key}: stopped; messages in flight were finished, the rest stay planned")
        return self._close_report(key, campaign, report)


class _Run:
    """One live send: the claim/submit/record loop of the main thread."""

    def __init__(self, channel: EmailChannel, ed: PreparedEdition, journal: Journal, report: DispatchReport, reserve: Reserve):
        self.c, self.ed, self.journal, self.report, self.reserve = channel, ed, journal, report, reserve
        self.ctx, self.ledger, self.key, self.ch = channel.ctx, channel.ctx.ledger, ed.key, channel.ledger_channel
        self.smtp = channel.settings.smtp
        self.batch = SHARED_BATCH if self.ledger.store.dialect != SQLITE else BATCH
        self.t0 = time.monotonic()
        self.finished: list[tuple[str, State, str | None, str | None]] = []
        self.retries: list[tuple[str, datetime, str]] = []  # counted: the relay answered 4xx for the recipient
        self.deferred: list[tuple[str, datetime, str]] = []  # not counted: nothing was said about the recipient
        self.released: list[str] = []
        self.bounced: list[tuple[str, str]] = []
        self.last_flush = time.monotonic()
        self.pool_fatal: DeliveryError | None = None
        self.disk_full: DiskFullError | None = None
        self.last_retry: str | None = None  # the last 4xx or connection failure, for the report
        self.task = None
        self.ids: dict[str, int] = {}  # subscriber ids of the rows in flight: their return paths and mailto tokens

    def now(self) -> datetime:
        """The run's `now` moved on by the time spent sending: due times work with a fixed --now too."""
        return self.ctx.now + timedelta(seconds=time.monotonic() - self.t0)

    def go(self, total: int) -> None:
        """Claim due rows, hand them to the pool, record what comes back; the pool's sockets run in this thread."""
        ctx = self.ctx
        pool = Pool(self.smtp, self.c.password, self.ed.template.sender, self._build, stop=ctx.stop, journal=self.journal,
                    sender_for=lambda target: self.ed.return_path(target, self.ids.get(target)))
        in_flight, cursor = 0, ""
        with ctx.progress.task(f"email {self.key}", total=total) as self.task:
            try:
                while True:
                    if ctx.stop.is_set() or pool.fatal is not None or self.disk_full is not None:
                        break
                    if in_flight and self._unreachable(pool):
                        pool.give_up()
                        self.last_retry = pool.last_trouble
                        break
                    if in_flight < self.batch:
                        rows = self.ledger.claim_range(self.key, self.ch, self.batch, cursor, self.now())
                        if rows:
                            cursor = rows[-1][0]
                            names = self.c._names([t for t, _ in rows])
                            self.ids.update(subscriber_ids(self.ledger.store, [t for t, _ in rows]))
                            pool.submit([Job(target, names.get(target, ""), attempts) for target, attempts in rows])
                            in_flight += len(rows)
                            continue
                        if cursor:  # end of the pass: start over for retries that came due
                            cursor = ""
                            continue
                    if in_flight:
                        in_flight -= self._take(pool.step(0.25))
                        continue
                    self._flush()
                    nb = self.ledger.next_not_before(self.key, self.ch)
                    if nb is None:
                        break
                    delay = (nb - self.now()).total_seconds()
                    if delay > self.smtp.retry_wait:
                        break
                    ctx.stop.wait(min(max(delay, 0.01), 1.0))
            except DiskFullError as exc:  # a claim could not be written: stop, and record what is known
                self.disk_full = self.disk_full or exc
            finally:
                given_up = pool.halted() and pool.fatal is None and not ctx.stop.is_set() and self.disk_full is None
                left = pool.close()  # the messages on the wire are finished; the rest never started
                self._take(pool.drain())
                if given_up:
                    # a relay that cannot be reached: they wait in the ledger, no attempt counted
                    until = self.now() + timedelta(seconds=max(self.smtp.retry_backoff, 1.0))
                    why = pool.last_trouble or "no connection to the SMTP server"
                    self.deferred += [(j.target, until, why) for j in left]
                else:
                    self.released += [j.target for j in left]
                if isinstance(pool.fatal, DiskFullError):
                    self.disk_full = self.disk_full or pool.fatal
                if self.disk_full is not None:
                    self.reserve.release()  # the room to record what the relay answered
                self._flush()
        if not isinstance(pool.fatal, DiskFullError):
            self.pool_fatal = pool.fatal

    def _unreachable(self, pool: Pool) -> bool:
        """No connection is open, the last ones failed, and nothing has moved for [smtp].retry_wait seconds."""
        return pool.ready == 0 and pool.failed_opens > 0 and time.monotonic() - pool.last_progress >= self.smtp.retry_wait

    def _build(self, job: Job) -> tuple[bytes, str]:
        return self.ed.message(job.target, job.name, subscriber_id=self.ids.get(job.target))

    def _take(self, results: list[Result]) -> int:
        """Record what the pool returned; flush to the ledger by batch or every FLUSH_SECONDS."""
        for job, reply, mid in results:
            self._record(job, reply, mid)
            self.ids.pop(job.target, None)
        if len(self.finished) + len(self.retries) + len(self.deferred) >= self.batch \
                or time.monotonic() - self.last_flush >= FLUSH_SECONDS:
            self._flush()
        return len(results)

    def _record(self, job: Job, reply: Reply, mid: str) -> None:
        if reply.outcome is SmtpOutcome.DEFER:  # deferred too often this run: the ledger waits, no attempt counted
            self.last_retry = reply.line()
            wait = max(self.smtp.retry_backoff, reply.wait or 0.0)
            self.deferred.append((job.target, self.now() + timedelta(seconds=wait), reply.line()))
            return
        if reply.outcome is SmtpOutcome.RETRY:
            self.last_retry = reply.line()
            attempts = job.attempts + 1
            if attempts >= self.smtp.max_attempts:
                self.finished.append((job.target, State.FAILED, None, f"gave up after {attempts} attempts: {reply.line()}"))
                self.report.failed += 1
                self.task.advance()
            else:
                backoff = min(self.smtp.retry_backoff * 2 ** (attempts - 1), 3600.0)
                self.retries.append((job.target, self.now() + timedelta(seconds=backoff), reply.line()))
            return
        state = {SmtpOutcome.SENT: State.SENT, SmtpOutcome.FAILED: State.FAILED, SmtpOutcome.UNKNOWN: State.UNKNOWN}[reply.outcome]
        self.finished.append((job.target, state, mid or None, reply.line()))
        if state is State.SENT:
            self.report.sent += 1
        elif state is State.FAILED:
            self.report.failed += 1
            if reply.hard_bounce:
                self.bounced.append((job.target, reply.line()))
        self.task.advance()

    def _flush(self) -> None:
        try:
            self._write()
        except DiskFullError as exc:  # the ledger's disk: free the reserve and record what we know
            self.disk_full = self.disk_full or exc
            self.reserve.release()
            self._write()

    def _write(self) -> None:
        if self.finished:
            self.ledger.finish(self.key, self.ch, self.finished, count_attempt=True)
            self.finished = []
        if self.retries:
            self.ledger.retry_later(self.key, self.ch, self.retries, count_attempt=True)
            self.retries = []
        if self.deferred:
            self.ledger.retry_later(self.key, self.ch, self.deferred)
            self.deferred = []
        if self.released:
            self.ledger.release(self.key, self.ch, self.released)
            self.released = []
        if self.bounced:
            self.ledger.store.suppress(self.bounced, "hard-bounce", self.ledger.clock())
            self.bounced = []
        self.last_flush = time.monotonic()


def _names(targets: list[str]) -> str:
    shown = ", ".join(targets[:LISTED])
    return shown + (f" and {len(targets) - LISTED} more (see 'publisher status')" if len(targets) > LISTED else "")


def make(settings: Settings, email_settings: EmailSettings, ctx: DispatchContext) -> EmailChannel:
    """The channel object for one dispatch."""
    return EmailChannel(settings, ctx)


