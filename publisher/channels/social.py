"""The exactly-once loop shared by every social channel and its outbox form.

Each post of an edition has one ledger row, (edition, channel, "post:N"). For every post, in thread
order: a `sent` row is skipped (its remote id becomes the parent of the next reply); a `planned` row
is claimed (-> `sending`, committed) before the network call and finished as `sent`, `failed` or
`unknown` after it. A thread never skips ahead: if a post fails, is unknown or has to wait, the posts
after it wait too, so a rerun resumes at the first post not sent, replying to the last one that was.

A network (see `Network` in posting.py) only performs one create and says what happened (`PostOutcome`); the waiting
policy lives here: 429 waits until the announced reset when that is within `max_wait` (never a tight
loop, interrupted by the stop flag), otherwise the row stays `planned` with a not-before time and is
reported pending; the same for trickle spacing and the daily cap of `campaign.social`, and for the
network's own pacing (`min_interval`, `daily_limit`), whichever is stricter.

Recovery: a row left `sending` by a killed run becomes `unknown`. Before anything is retried, the
network may read the post back (`find`): a post it already has is `sent` and reported as found
already posted, never as sent again. What is still unknown is retried only where the network makes
that safe (`retry_unknown`: an idempotency key, a record key, a complete read-back that found nothing),
or on the user's --resend-unknown.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from publisher.channels import ChannelDisabled, DispatchContext, DispatchReport
from publisher.channels.posting import Network, Plain, PostKey, PostOutcome, Thread, target
from publisher.config import parse_duration, secret
from publisher.errors import DeliveryError
from publisher.models import Delivery, Post, State

if TYPE_CHECKING:
    from publisher.config import Campaign, Settings
    from publisher.models import RenderedEdition


@dataclass
class SocialChannel:
    """A social channel: the ledger loop around one Network."""

    net: Network
    ctx: DispatchContext
    backoff: tuple[float, ...] = (1.0, 3.0)  # seconds between retries of a `retry` outcome
    max_rate_limit_waits: int = 3
    name: str = field(init=False)

    def __post_init__(self) -> None:
        self.name = self.net.channel

    def clock(self) -> datetime:
        return self.ctx.ledger.clock()

    def dispatch(self, rendered: "RenderedEdition", campaign: "Campaign") -> DispatchReport:
        """Send the edition's posts for this network, exactly once each, in thread order."""
        net, ledger = self.net, self.ctx.ledger
        edition = rendered.edition
        key, ch = edition.key, net.channel
        report = DispatchReport(channel=ch, edition_key=key)
        posts = sorted(rendered.posts.get(net.network, ()), key=lambda p: p.position)
        if not posts:
            report.messages.append(f"{ch}: no {net.network} posts in {key}; nothing to send")
            return report
        ledger.plan(key, ch, [target(p) for p in posts])
        for t in ledger.recover(key, ch):
            report.messages.append(f"{ch}: {t} of {key} was on the wire when a run stopped; its outcome is unknown")
        prepared, found = self._release_unknown(edition, {target(p): p for p in posts}, campaign, report)

        threaded = campaign.social.mode != "per_article"
        spacing = max(parse_duration(campaign.social.spacing, f"{campaign.source}: [social].spacing"), net.min_interval)
        cap = min((c for c in (campaign.social.daily_cap, net.daily_limit) if c > 0), default=0)
        thread = Thread()
        blocked: str | None = None
        with self.ctx.progress.task(f"{ch} {key}", total=len(posts)) as task:
            for post in posts:
                t = target(post)
                row = ledger.get(key, ch, t)
                assert row is not None  # planned above
                if row.state in (State.SENT, State.FAILED, State.UNKNOWN):
                    if t not in found:  # a post found by the read-back above is already counted
                        blocked = self._earlier(row, key, campaign, report, threaded, blocked)
                    if row.state is State.SENT:
                        thread = thread.after(row.remote_id)
                        task.advance()
                    continue
                if blocked:
                    report.pending += 1
                    continue
                why = self._wait_for_turn(key, t, spacing, cap)
                if why is None and self.ctx.stop.is_set():
                    why = "stopped before it was sent"
                if why:
                    report.pending += 1
                    report.messages.append(f"{ch}: {t} of {key} waits: {why}; rerun 'publisher send {campaign.name}' later")
                    blocked = why
                    continue
                if not prepared:
                    try:
                        net.prepare(campaign)
                    except DeliveryError as exc:
                        report.pending += 1
                        report.messages.append(f"{ch}: {exc}")
                        blocked = "not prepared"
                        continue
                    prepared = True
                if not ledger.claim_one(key, ch, t):
                    report.pending += 1
                    blocked = f"{t} is held by another process"
                    continue
                pkey = PostKey(edition_key=key, network=net.network, target=t, slot=edition.slot)
                outcome = self._attempt(post, thread if threaded and post.position > 0 else None, pkey)
                blocked = self._record(outcome, post, key, campaign, report, threaded)
                if outcome.kind == "sent":
                    thread = thread.after(outcome.remote_id)
                    task.advance()
        return report

    # -- steps -------------------------------------------------------------------------------

    def _earlier(self, row: Delivery, key: str, campaign: "Campaign", report: DispatchReport, threaded: bool,
                 blocked: str | None) -> str | None:
        """Count a post an earlier run settled; a failed or unknown post holds back the rest of a thread."""
        ch, t = self.net.channel, row.target
        if row.state is State.SENT:
            report.skipped += 1
            return blocked
        if row.state is State.FAILED:
            report.failed += 1
            report.messages.append(f"{ch}: {t} of {key} failed earlier: {row.reply or 'no reply recorded'}")
            return blocked or (f"{t} failed" if threaded else None)
        report.unknown += 1
        report.messages.append(self._unknown_hint(t, key, campaign, row.reply))
        return blocked or (f"{t} is unknown" if threaded else None)

    def _release_unknown(self, edition, posts: dict[str, Post], campaign: "Campaign",  # noqa: ANN001
                         report: DispatchReport) -> tuple[bool, set[str]]:
        """Settle `unknown` rows: a post the network already has (read back by `find`) becomes `sent`
        and is reported as found; the others go back to `planned`: all of them on --resend-unknown,
        else those the network can retry without any risk of a second post (idempotency key, record
        key, a read-back that found nothing). Returns whether the network was prepared for the read-back,
        and the targets found."""
        ledger, net, key, ch = self.ctx.ledger, self.net, edition.key, self.net.channel
        unknown = [r for r in ledger.rows(key, ch, State.UNKNOWN) if r.target in posts]
        found: set[str] = set()
        if not unknown:
            return False, found
        try:
            net.prepare(campaign)
            prepared = True
        except DeliveryError:
            prepared = False  # no read-back then; the loop reports why when it tries to send
        still = []
        for row in unknown:
            pkey = PostKey(edition_key=key, network=net.network, target=row.target, slot=edition.slot)
            outcome = net.find(posts[row.target], pkey) if prepared else None
            if outcome is not None and outcome.kind == "sent":
                ledger.finish(key, ch, [(row.target, State.SENT, outcome.remote_id, outcome.reply or None)])
                report.found += 1
                found.add(row.target)
                report.messages.append(f"{ch}: {row.target} of {key} was found already posted ({outcome.reply})")
            else:
                still.append(row)
        if self.ctx.resend_unknown:
            n = ledger.resend_unknown(key, ch)
            if n:
                report.messages.append(f"{ch}: resending {n} post(s) of {key} whose outcome was unknown")
            return prepared, found
        now = self.clock()
        safe = [(r.target, now, (r.reply or "") + "; retried safely") for r in still if net.retry_unknown(r, now)]
        if safe:
            ledger.retry_later(key, ch, safe)
        return prepared, found

    def _wait_for_turn(self, key: str, t: str, spacing: timedelta, cap: int) -> str | None:
        """Wait (within max_wait) for the row's not-before time, spacing and daily cap; or leave the
        row `planned` with a not-before time and return why it waits."""
        ledger, ch = self.ctx.ledger, self.net.channel
        while True:
            now = self.clock()
            until, why = ledger.not_before(key, ch, t), "rate limited or retrying"
            if self.net.paced:
                last = ledger.last_sent_at(ch)
                if spacing and last and (until is None or last + spacing > until):
                    until, why = last + spacing, f"spacing of {spacing} between posts"
                if cap > 0:
                    times = ledger.sent_times(ch, now - timedelta(days=1))
                    if len(times) >= cap:
                        free = times[len(times) - cap] + timedelta(days=1)
                        if until is None or free > until:
                            until, why = free, f"daily cap of {cap} posts reached"
            if until is None or until <= now:
                return None
            if until - now > self.net.max_wait or self.ctx.stop.is_set():
                ledger.retry_later(key, ch, [(t, until, why)])
                return f"{why}, until {until.isoformat(timespec='seconds')}"
            self.ctx.stop.wait((until - now).total_seconds())
            if self.ctx.stop.is_set():
                return "stopped while waiting"
            if self.clock() <= now:  # a fixed clock (--now) does not move: the wait is served
                return None

    def _attempt(self, post: Post, reply_to: Thread | None, pkey: PostKey) -> PostOutcome:
        """One post with its allowed repeats: 429 waits until the reset, `retry` backs off."""
        waits = retries = 0
        while True:
            outcome = self.net.create(post, reply_to, pkey)
            if outcome.kind == "rate_limited":
                now = self.clock()
                reset = outcome.retry_at or now + timedelta(seconds=60)
                if waits >= self.max_rate_limit_waits or reset - now > self.net.max_wait or self.ctx.stop.is_set():
                    return outcome
                waits += 1
                # at least a second: a reset already in the past must not turn into a tight loop
                self.ctx.stop.wait(max(1.0, (reset - now).total_seconds()))
                if self.ctx.stop.is_set():
                    return outcome
                continue
            if outcome.kind == "retry" and retries < len(self.backoff) and not self.ctx.stop.is_set():
                self.ctx.stop.wait(self.backoff[retries])
                retries += 1
                continue
            return outcome

    def _record(self, o: PostOutcome, post: Post, key: str, campaign: "Campaign", report: DispatchReport,
                threaded: bool) -> str | None:
        """Write the outcome to the ledger; returns why the rest of the thread must wait, if it must."""
        ledger, ch, t = self.ctx.ledger, self.net.channel, target(post)
        if o.kind == "sent":
            ledger.finish(key, ch, [(t, State.SENT, o.remote_id, o.reply or None)])
            if o.found:
                report.found += 1
            else:
                report.sent += 1
            if not o.remote_id and o.reply:
                report.messages.append(f"{ch}: {t} of {key}: {o.reply}")
            return None
        if o.kind == "rate_limited":
            until = o.retry_at or self.clock() + timedelta(seconds=60)
            ledger.retry_later(key, ch, [(t, until, o.reply or "rate limited")])
            report.pending += 1
            report.messages.append(f"{ch}: {t} of {key} waits: rate limited until {until.isoformat(timespec='seconds')};"
                                   f" rerun 'publisher send {campaign.name}' then")
            return "rate limited"
        if o.kind == "retry" and not o.maybe_taken:
            until = self.clock() + timedelta(minutes=5)
            ledger.retry_later(key, ch, [(t, until, o.reply)])
            report.pending += 1
            report.messages.append(f"{ch}: {t} of {key} not sent ({o.reply}); it will be tried again after"
                                   f" {until.isoformat(timespec='seconds')} by 'publisher send {campaign.name}'")
            return "not sent yet"
        if o.kind in ("unknown", "retry"):
            ledger.finish(key, ch, [(t, State.UNKNOWN, None, o.reply)])
            report.unknown += 1
            report.messages.append(self._unknown_hint(t, key, campaign, o.reply))
            return f"{t} is unknown" if threaded else None
        ledger.finish(key, ch, [(t, State.FAILED, None, o.reply)])
        report.failed += 1
        report.messages.append(f"{ch}: {t} of {key} failed: {o.reply}")
        return f"{t} failed" if threaded else None

    def _unknown_hint(self, t: str, key: str, campaign: "Campaign", reply: str | None) -> str:
        return (f"{self.net.channel}: {t} of {key}: outcome unknown ({reply or 'no reply'}); check the account, and if"
                f" the post is missing run 'publisher send {campaign.name} --resend-unknown'")


# -- outbox -------------------------------------------------------------------------------------


@dataclass
class OutboxNetwork(Plain):
    """`delivery = "outbox"`: each post is written as JSON under outbox/<campaign>/<edition>/<network>/;
    no network call and no credentials. Rows live under channel "outbox:<network>"."""

    network: str
    folder: Path
    paced: bool = False
    max_wait: timedelta = timedelta(0)
    channel: str = field(init=False)

    def __post_init__(self) -> None:
        self.channel = f"outbox:{self.network}"

    def prepare(self, campaign: "Campaign") -> None:
        return None

    def create(self, post: Post, reply_to: Thread | None, key: PostKey) -> PostOutcome:
        campaign, _, edition = key.edition_key.partition("/")
        folder = self.folder / campaign / edition / self.network
        path = folder / f"post-{post.position}.json"
        doc = {"network": post.network, "position": post.position, "text": post.text, "length": post.length,
               "limit": post.limit, "links": list(post.links), "image": post.image, "article_id": post.article_id,
               "card": post.card, "language": post.language, "edition": key.edition_key,
               "in_reply_to": reply_to.parent if reply_to else None, "thread_root": reply_to.root if reply_to else None}
        if post.images:
            doc["images"] = list(post.images)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, path)  # atomic: a reader never sees half a post
        except OSError as exc:
            return PostOutcome("failed", reply=f"cannot write {path}: {exc.strerror}")
        return PostOutcome("sent", remote_id=str(path.relative_to(self.folder)))

    def retry_unknown(self, row: Delivery, now: datetime) -> bool:
        return True  # rewriting the same file cannot duplicate anything


def outbox_channel(network: str, ctx: DispatchContext) -> SocialChannel:
    """The outbox form of a social channel (no credentials needed)."""
    return SocialChannel(OutboxNetwork(network, Path(ctx.outbox)), ctx)


def credential(name: str, settings: "Settings") -> str:
    """A PUBLISHER_* secret a live channel needs; without it the channel is disabled, naming the variable."""
    value = secret(name)
    if not value:
        raise ChannelDisabled(f"missing {name} in the environment; set it, or use"
                              f" [publisher] delivery = \"outbox\" in {settings.source}")
    return value


def required(value: str | None, key: str, settings: "Settings") -> str:
    """A setting a live channel needs (which Page, account, chat); without it the channel is disabled."""
    if not value:
        raise ChannelDisabled(f"not configured: set {key} in {settings.source}")
    return value


def token_factory(network: str, token: str, account: str | None, build: Callable[..., Network]):
    """The factory of a channel that needs one PUBLISHER_* token and (optionally) an account setting:
    the outbox form, or `build(channel_settings, token, clock)` wrapped in the loop; without the token or
    the setting the channel is disabled, naming what to set."""

    def make(settings: "Settings", channel_settings: Any, ctx: DispatchContext) -> SocialChannel:
        if ctx.outbox is not None:
            return outbox_channel(network, ctx)
        if account:
            required(getattr(channel_settings, account), f"[{network}].{account}", settings)
        return SocialChannel(build(channel_settings, credential(token, settings), ctx.ledger.clock), ctx)

    make.__doc__ = f"The {network} channel: the outbox form, or live posting with {token}."
    return make
