"""The scheduler: `publisher run` (one wake-up, for cron) and `publisher schedule` (runs for months).

Both make the same decision, `scheduler.due.due(...)`, from the campaign schedules, one `now`, and what the
store says (editions frozen or skipped, ledger rows still open, dispatch runs, the last fetch). The
`schedule` library only provides the wake-ups of the long-running loop; it never decides what is due,
so a restart, a sleeping laptop or a DST change cannot make it send twice or in the wrong week.

Only one scheduler runs per store: it holds the "scheduler" lease, an OS lock beside the SQLite file
that lives exactly as long as the process (no heartbeat, no expiry a clock could fake). SIGTERM/SIGINT set `ctx.stop`: the channels finish the message or post
in flight and leave the rest `planned` (pending), and the process exits 0.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable, Iterator, Sequence

import schedule

from publisher.app import Context
from publisher.channels.email.notice import ask_editors
from publisher.config import Campaign, parse_duration
from publisher.errors import DeliveryError, LockedError, PublisherError, StoreError
from publisher.feedback.mailbox import MailboxReport, process
from publisher.feedback.tokens import signers_from_env
from publisher.pipeline import dispatch, fetch, prepare
from publisher.scheduler.due import Due
from publisher.scheduler.facts import BOUNCES_STATE, LEASE, decide, last_tick
from publisher.store.db import iso
from publisher.store.newsroom import editors, gate

log = logging.getLogger("publisher")

MIN_SLEEP = 0.1  # the loop never spins faster than this, whatever the tick or the clock say
MAX_BACKOFF = timedelta(hours=1)


# -- the jobs ------------------------------------------------------------------------------------


def _fetch(ctx: Context) -> list:
    return fetch(ctx)


def _bounces(ctx: Context) -> MailboxReport:
    tokens, web = signers_from_env(required=True)
    return process(ctx.store, ctx.settings.bounces, ctx.now, tokens, web)


def _send(ctx: Context, campaign: Campaign, edition_id: str, channels: Sequence[str]):
    """Render-and-freeze (or reuse the frozen rendering) and dispatch; a thin week returns its skip reason."""
    rendered, skip = prepare(ctx, campaign, edition_id)
    if rendered is None:
        return skip
    # shared: `publisher send --join` on other machines (one PostgreSQL store) may help with a big list
    return dispatch(ctx, campaign, rendered, channels, join=True)


@dataclass
class Jobs:
    """The side effects a wake-up performs; tests swap in recorders or failing jobs."""

    fetch: Callable[[Context], list] = _fetch
    send: Callable[[Context, Campaign, str, Sequence[str]], object] = _send
    bounces: Callable[[Context], MailboxReport] = _bounces


@dataclass
class WakeResult:
    """What one wake-up did, for `publisher run`'s exit code and the tests."""

    actions: list[Due] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # one line per job that raised or failed
    exit_code: int = 0  # the highest exit code among the errors (PublisherError codes, 1 for a bug)
    feed_failures: int = 0
    delivery_trouble: int = 0  # failed, unknown or pending deliveries reported
    stopped: bool = False


class Runner:
    """Carries out what `decide` says, one action at a time; one failing job never stops the others."""

    def __init__(self, ctx: Context, campaigns: Sequence[Campaign], jobs: Jobs | None = None,
                 emit: Callable[[str], None] | None = None):
        self.ctx = ctx
        self.campaigns = list(campaigns)
        self.by_name = {c.name: c for c in self.campaigns}
        self.jobs = jobs or Jobs()
        self.emit = emit or log.info
        self.failures: dict[str, int] = {}  # job key -> consecutive failures
        self.hold: dict[str, datetime] = {}  # job key -> not before (backoff after repeated failures)
        self.tick = parse_duration(ctx.settings.schedule.tick, "[schedule].tick")

    def wake(self, now: datetime) -> WakeResult:
        """One wake-up at `now`: decide, then fetch, record missed slots, and send what is due."""
        ctx = self.ctx.at(now)  # every job of this wake-up acts at `now`
        result = WakeResult()
        actions = decide(ctx, self.campaigns, now)
        for action in _with_what_the_fetch_brought(actions, lambda: decide(ctx, self.campaigns, now)):
            if ctx.stop.is_set():
                result.stopped = True
                break
            held = self.hold.get(action.key)
            if held and now < held:
                self.emit(f"{action.line()}; held back after {self.failures[action.key]} failure(s) until {held:%H:%M:%S} UTC")
                continue
            result.actions.append(action)
            self.emit(action.line())
            try:
                ok = self._do(action, now, result)
            except StoreError:
                raise  # the store's connection is gone: only a new process gets a new one (and its lease back)
            except Exception as exc:  # noqa: BLE001 - a job never kills the scheduler; it is retried later
                ok = False
                known = isinstance(exc, PublisherError)
                line = f"{action.key}: {exc}" if known else f"{action.key}: {type(exc).__name__}: {exc}"
                result.errors.append(line)
                result.exit_code = max(result.exit_code, exc.exit_code if known else PublisherError.exit_code)
                log.error("job failed: %s; retrying at the next wake-up", line, exc_info=ctx.verbose > 0)
            self._count(action.key, ok, now)
        if ctx.stop.is_set():
            result.stopped = True
        prev = last_tick(ctx.store)
        if prev is None or now > prev:
            ctx.store.set_state("last_tick", iso(now), now)
        return result

    def wake_safely(self, now: datetime) -> WakeResult | None:
        """`wake`, with any error (even reading the store) logged instead of raised: the loop goes on. Except a
        lost database connection (StoreError): this process's session, and its lease with it, are gone."""
        try:
            return self.wake(now)
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001
            log.error("wake-up at %s failed: %s: %s; trying again at the next wake-up",
                      iso(now), type(exc).__name__, exc, exc_info=self.ctx.verbose > 0)
            try:
                self.ctx.store.set_state("last_error", f"{iso(now)} {type(exc).__name__}: {exc}", now)
            except Exception:  # noqa: BLE001 - the store itself may be what failed
                pass
            return None

    def _count(self, key: str, ok: bool, now: datetime) -> None:
        if ok:
            self.failures.pop(key, None)
            self.hold.pop(key, None)
            return
        n = self.failures[key] = self.failures.get(key, 0) + 1
        # retried at the next wake-up; after repeated failures, wake-ups are skipped: 0, 1, 3, 7, ... of them
        wait = min(self.tick * (2 ** (n - 1)) - self.tick / 2, MAX_BACKOFF)
        if n > 1:
            self.hold[key] = now + wait
        self.ctx.store.set_state("last_error", f"{iso(now)} {key}: failed {n} time(s) in a row", now)

    def _do(self, action: Due, now: datetime, result: WakeResult) -> bool:
        ctx = self.ctx
        if action.kind == "fetch":
            results = self.jobs.fetch(ctx)
            bad = 0
            for r in results:
                (self.emit if r.ok else log.warning)(f"fetch: {r.line()}")
                bad += not r.ok
            result.feed_failures += bad
            ctx.store.set_state("last_fetch", iso(now), now)
            return True
        if action.kind == "bounces":
            b = ctx.settings.bounces
            self.emit(self.jobs.bounces(ctx.at(now)).line(b.folder, b.processed_folder))
            ctx.store.set_state(BOUNCES_STATE, iso(now), now)
            return True
        if action.kind == "skip":
            ctx.store.record_skip(action.campaign, action.edition_id, action.reason, now)
            self.emit(f"{action.key}: recorded as skipped ({action.reason})")
            return True
        campaign = self.by_name[action.campaign]
        if action.kind == "hold":
            if campaign.approval == "required" and not gate(ctx.store, campaign.name, action.edition_id).approved:
                for line in ask_editors(ctx.settings, ctx.ledger(), f"approval/{action.key}", editors(ctx.store),
                                        *approval_request(ctx.settings, campaign, action), now):
                    self.emit(line)
            return True
        reports = self.jobs.send(ctx, campaign, action.edition_id, action.channels)
        if isinstance(reports, str) or reports is None:
            self.emit(f"{action.key}: skipped ({reports or 'nothing to send'}); recorded, see 'publisher status'")
            return True
        ok = True
        for r in reports:
            self.emit(r.line())
            for m in r.messages:
                self.emit(m)
            if r.error:
                self.emit(f"error: {r.error}")
            if r.trouble:
                result.delivery_trouble += 1
        for name in action.channels:
            runs = ctx.store.runs(action.key, name)
            outcome = (runs[-1].outcome or "") if runs else ""
            if outcome.startswith(("error", "crashed")):
                result.errors.append(f"{action.key} {name}: {outcome}")
                result.exit_code = max(result.exit_code, DeliveryError.exit_code)
                ok = False
        if ctx.stop.is_set():
            left = sum(r.pending for r in reports)
            self.emit(f"{action.key}: stopping; {left} delivery(ies) left planned for the next run")
        return ok


def approval_request(settings, campaign: Campaign, action: Due) -> tuple[str, str]:
    """(subject, text) of the mail telling editors that an edition waits for their approval."""
    url = f"{settings.pages_url}/admin/{campaign.name}/{action.edition_id}"
    subject = f"[{campaign.title}] {action.edition_id} waits for your approval"
    text = (f"The edition {action.edition_id} of {campaign.title} was due at {action.slot:%Y-%m-%d %H:%M %Z} and is held"
            f" until an editor approves it.\n\nReview it, send yourself a test and approve it here:\n{url}\n\n"
            "It goes out at the first scheduler wake-up after the approval.\n")
    return subject, text


def _with_what_the_fetch_brought(actions: list[Due], decide_again: Callable[[], list[Due]]) -> Iterator[Due]:
    """`actions`, then, when they included a fetch, what that fetch made due (decided again): an article
    matching a campaign's [alerts] goes out in the wake-up that fetched it, not one tick later."""
    yield from actions
    if any(a.kind == "fetch" for a in actions):
        seen = {a.key for a in actions}
        yield from (a for a in decide_again() if a.kind != "fetch" and a.key not in seen)


# -- one scheduler per store ---------------------------------------------------------------------


@contextmanager
def scheduler_lease(ctx: Context) -> Iterator[None]:
    """Hold the "scheduler" lease while the block runs; a second scheduler gets LockedError (exit 5).

    The lease is an OS lock held by this process (Store.acquire_lease): it ends when the process ends,
    killed or not, and no clock, --now included, can make another scheduler take it while we live."""
    try:
        ctx.store.acquire_lease(LEASE, ctx.clock())
    except LockedError:
        row = ctx.store.lease(LEASE)
        holder = f"{row.holder} since {iso(row.acquired_at)}" if row else "another process"
        raise LockedError(f"another scheduler is running on {ctx.settings.store_name}: {holder}",
                          hint="stop it first (e.g. 'systemctl stop publisher'); its lease ends with that process") from None
    try:
        yield
    finally:
        ctx.store.release_lease(LEASE)


def loop(runner: Runner, stop: threading.Event, clock: Callable[[], datetime]) -> int:
    """Wake up now and every tick (via `schedule`) until `stop` is set; returns the number of wake-ups."""
    tick = max(runner.tick.total_seconds(), MIN_SLEEP)
    wakes = 0

    def wake() -> None:
        nonlocal wakes
        wakes += 1
        runner.wake_safely(clock())

    jobs = schedule.Scheduler()
    jobs.every(tick).seconds.do(wake)
    wake()
    while not stop.is_set():
        try:
            jobs.run_pending()
        except StoreError:
            raise  # the command exits 7; systemd starts a new scheduler, which waits for the database
        except Exception as exc:  # noqa: BLE001 - wake_safely already catches; this guards `schedule` itself
            log.error("scheduler loop: %s: %s", type(exc).__name__, exc)
        idle = jobs.idle_seconds
        stop.wait(min(tick, max(idle if idle is not None else tick, MIN_SLEEP)))
    return wakes
