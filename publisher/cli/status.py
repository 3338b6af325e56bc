"""`publisher status [CAMPAIGN] [--edition YYYY-Www]`: what the scheduler and the sends did, and what is next.

Read-only: the scheduler lease, the last fetch of each feed with its result, and per campaign the next
run, what is due now (the same decision `publisher run` makes), the last edition per channel with its
ledger counts (sent, pending, failed with reasons, unknown listed), how long the send took, skipped
editions with their reason, and suppressed addresses.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Sequence
from zoneinfo import ZoneInfo

from publisher.app import Context
from publisher.config import Campaign, load_campaigns
from publisher.editions import next_slot, parse_edition_id
from publisher.models import State
from publisher.scheduler.due import next_fetch
from publisher.scheduler.facts import LEASE, decide, last_fetch, last_tick
from publisher.store.feedback import counts_for_edition
from publisher.store.ledger import Ledger
from publisher.store.audience import notice_counts
from publisher.store.newsroom import gate, recent_decisions
from publisher.store.subscribers import suppressed_by_reason

UTC = timezone.utc
LIST_LIMIT = 10  # addresses listed per reason before "and N more"
REASON_LIMIT = 10  # failure reasons listed, most frequent first; the rest are counted on one line


def command_status(ctx: Context, args) -> int:
    """Print the status report; exit 0 (the report itself says what needs attention)."""
    edition = getattr(args, "edition", None)
    if edition:
        parse_edition_id(edition)
    names = [args.campaign] if getattr(args, "campaign", None) else []
    campaigns = load_campaigns(ctx.settings, names)
    print("\n".join(report(ctx, campaigns, ctx.now, edition)))
    return 0


def report(ctx: Context, campaigns: Sequence[Campaign], now: datetime, edition: str | None = None) -> list[str]:
    """The status report as lines."""
    lines = scheduler_lines(ctx, now)
    lines += [""] + feed_lines(ctx, now)
    actions = decide(ctx, campaigns, now)
    for c in campaigns:
        lines += [""] + campaign_lines(ctx, c, now, [a for a in actions if a.campaign == c.name], edition)
    lines += [""] + suppression_lines(ctx) + notice_lines(ctx)
    return lines


# -- scheduler and feeds ---------------------------------------------------------------------------


def scheduler_lines(ctx: Context, now: datetime) -> list[str]:
    store = ctx.store
    lease = store.lease(LEASE)
    tick = last_tick(store)
    last = f"last wake-up {_t(tick)}" if tick else "never woke up on this store"
    if lease:  # the store only returns a lease that a live process holds
        lines = [f"scheduler: running, {lease.holder} since {_t(lease.acquired_at)} ({last})"]
    else:
        lines = [f"scheduler: not running ({last})"]
    error = store.get_state("last_error")
    if error:
        lines.append(f"  last error: {error}")
    return lines


def feed_lines(ctx: Context, now: datetime) -> list[str]:
    s = ctx.settings.schedule
    last = last_fetch(ctx)
    nxt = next_fetch(now, s.fetch_interval, last)
    lines = [f"feeds (fetch every {s.fetch_every}; next fetch {'due now' if nxt <= now else _t(nxt)}):"]
    states = {r.source: r for r in ctx.store.feed_states()}
    sources = list(ctx.settings.feeds.sources) + sorted(set(states) - set(ctx.settings.feeds.sources))
    if not sources:
        lines.append("  no sources configured ([feeds].sources)")
    width = min(max((len(src) for src in sources), default=0), 60)
    for src in sources:
        r = states.get(src)
        if r is None or not r.last_fetch:
            lines.append(f"  {src:<{width}}  never fetched")
            continue
        flag = "ok" if r.ok else "FAILED"
        result = (r.last_result or "").removeprefix(f"{src}: ")
        lines.append(f"  {src:<{width}}  {_t(r.last_fetch)}  {flag}: {result}".rstrip())
    return lines


# -- campaigns -------------------------------------------------------------------------------------


def campaign_lines(ctx: Context, c: Campaign, now: datetime, actions, edition: str | None) -> list[str]:
    tz = c.tz
    eid, at = next_slot(c, now)
    lines = [f"{c.name}: {c.title} ({c.schedule}, {c.timezone}; channels {', '.join(c.channels)})",
             f"  next run: {eid} at {_t(at, tz)}"]
    for a in actions:
        verb = {"send": "due now", "skip": "to record as skipped", "hold": "held"}.get(a.kind, a.kind)
        what = f" on {', '.join(a.channels)}" if a.channels else ""
        lines.append(f"  {verb}: {a.edition_id}{what} ({a.reason})")
    lines += decision_lines(ctx, c, edition)
    records = ctx.store.edition_records(c.name)
    if edition:
        rec = next((r for r in records if r.edition_id == edition), None)
        lines.append(f"  edition {edition}: " + (_record_text(rec, tz) if rec else "no record (never sent or skipped)"))
        for name in c.channels:
            lines += channel_lines(ctx, c, edition, name)
        return lines
    frozen = [r for r in records if r.status == "frozen"]
    if frozen:
        lines.append(f"  last edition: {frozen[-1].edition_id}, {_record_text(frozen[-1], tz)}")
    else:
        lines.append("  last edition: none sent yet")
    last_by_channel = {r.channel: r.edition_key.split("/", 1)[1] for r in ctx.store.last_runs(c.name)}
    for name in c.channels:
        eid_for = last_by_channel.get(name)
        if eid_for is None:
            lines.append(f"    {name}: never sent")
        else:
            lines += channel_lines(ctx, c, eid_for, name)
    skipped = [r for r in records if r.status == "skipped"][-3:]
    for r in reversed(skipped):
        lines.append(f"  skipped {r.edition_id}: {r.reason}")
    return lines


_DONE = {"approve": "approved", "hold": "held", "release": "released"}


def decision_lines(ctx: Context, c: Campaign, edition: str | None) -> list[str]:
    """Who approved, held or released the campaign's last editions (or the given one), and when."""
    decisions = gate(ctx.store, c.name, edition).decisions if edition else recent_decisions(ctx.store, c.name)
    lines = ["  approval: required (publisher serve, admin area)"] if c.approval == "required" else []
    return lines + [f"  {_DONE[d.action]} {d.edition_id} by {d.who} on {_t(d.at, c.tz)}" for d in decisions]


def channel_lines(ctx: Context, c: Campaign, edition_id: str, name: str) -> list[str]:
    """One channel's ledger counts for one edition, the failures by reason, the unknown rows, the duration.

    Every figure comes from an index (see publisher/store/tables.py) and every list is cut short, so a
    million-row edition is reported as fast as a small one.
    """
    key = f"{c.name}/{edition_id}"
    ledger = ctx.ledger()
    # ledger rows may be kept under "outbox:email" while the campaign names "email"
    ledger_names = [ch for ch in ctx.store.delivery_channels(key) if ch == name or ch.endswith(":" + name)]
    counts = {"planned": 0, "sending": 0, "sent": 0, "failed": 0, "unknown": 0}
    for ln in ledger_names:
        for state, n in ledger.counts(key, ln).items():
            counts[state] += n
    runs = ctx.store.runs(key, name)
    took = _duration(runs)
    shown = f"{name} ({', '.join(ledger_names)})" if ledger_names and ledger_names != [name] else name
    lines = [f"    {shown} {edition_id}: sent {counts['sent']}, pending {counts['planned'] + counts['sending']},"
             f" failed {counts['failed']}, unknown {counts['unknown']}{took}"]
    if name == "email" and name in ledger_names:  # what the mail system said after the relay's 250 (live sends only)
        lines += feedback_lines(ctx, key, counts["sent"])
    failures = ledger.failures(key, ledger_names, REASON_LIMIT, LIST_LIMIT)
    for reply, n, targets in failures:
        lines.append(f"      failed ({n}): {_one_line('no reason recorded' if reply is None else reply)}: {_cap(targets, n)}")
    other = counts["failed"] - sum(n for _, n, _ in failures)
    if other:
        lines.append(f"      failed ({other}): other reasons, less frequent than these {REASON_LIMIT}")
    if counts["unknown"]:
        unknown = ledger.first_targets(key, ledger_names, State.UNKNOWN, LIST_LIMIT)
        lines.append(f"      unknown ({counts['unknown']}): {_cap(unknown, counts['unknown'])}; resend only with"
                     f" 'publisher send {c.name} --edition {edition_id} --channel {name} --resend-unknown'")
    if counts["sending"]:
        lines += sender_lines(ledger, key, ledger_names, f"publisher send {c.name} --edition {edition_id}")
    if runs and runs[-1].outcome and runs[-1].outcome not in ("ok", "stopped"):
        lines.append(f"      last run: {_one_line(runs[-1].outcome)}")
    if counts["planned"] + counts["sending"] and runs and runs[-1].outcome == "stopped":
        lines.append(f"      stopped before the end; the scheduler resumes it, or run 'publisher send {c.name} --edition {edition_id}'")
    return lines


def sender_lines(ledger: Ledger, key: str, channels: list[str], send: str) -> list[str]:
    """Who has the rows in `sending`: a live sender (one of several sharing the edition) or one that stopped."""
    lines = []
    for ch in channels:
        for holder, n, alive in ledger.senders(key, ch):
            who = ledger.sender_name(holder)
            named = f" ({who})" if who else ""
            if alive:
                lines.append(f"      being sent now ({n}) by a sender{named}")
            else:
                lines.append(f"      held ({n}) by a sender that stopped{named}: rerun '{send}' on its machine to settle"
                             " them from its wire journal, or on another machine to mark them unknown")
    return lines


BOUNCE_WARNING = 0.02  # Gmail's and Yahoo's bulk-sender guidance: keep bounces under 2%
COMPLAINT_WARNING = 0.001  # and spam complaints under 0.1% (0.3% is where they start refusing mail)


def feedback_lines(ctx: Context, key: str, sent: int) -> list[str]:
    """Delivered, bounced (hard/soft), complaints and unsubscribes of one edition, with the warnings."""
    f = counts_for_edition(ctx.store, key)
    bounced = f["hard-bounce"] + f["soft-bounce"]
    lines = [f"      delivered {max(sent - bounced, 0)}, bounced {bounced} (hard {f['hard-bounce']}, soft {f['soft-bounce']}),"
             f" complaints {f['complaint']}, unsubscribes {f['unsubscribed']}"]
    if sent and bounced / sent > BOUNCE_WARNING:
        lines.append(f"      WARNING: {bounced / sent:.1%} of this edition bounced (above {BOUNCE_WARNING:.0%}): mailbox providers"
                     " throttle or refuse senders whose lists hold dead addresses; run 'publisher bounces' regularly")
    if sent and f["complaint"] / sent > COMPLAINT_WARNING:
        lines.append(f"      WARNING: {f['complaint'] / sent:.2%} of this edition was reported as spam (above {COMPLAINT_WARNING:.1%}):"
                     " Gmail and Yahoo refuse bulk mail above 0.3%; check who signed up and how easy unsubscribing is")
    return lines


def notice_lines(ctx: Context) -> list[str]:
    """The sign-up mails (ledger channels notice and outbox:notice), when there are any."""
    found = notice_counts(ctx.store, ("notice", "outbox:notice"))
    if not found:
        return []
    parts = [f"{found.get(s.value, 0)} {s.value}" for s in (State.SENT, State.FAILED, State.UNKNOWN) if found.get(s.value)]
    pending = found.get(State.PLANNED.value, 0) + found.get(State.SENDING.value, 0)
    return ["sign-up mails (confirmation, welcome): " + ", ".join(parts + ([f"{pending} pending"] if pending else []))
            + ("; unknown ones may have arrived: the reader can sign up again" if found.get(State.UNKNOWN.value) else "")]


def suppression_lines(ctx: Context) -> list[str]:
    rows = suppressed_by_reason(ctx.store)
    total = sum(n for _, n in rows)
    detail = ", ".join(f"{reason} {n}" for reason, n in rows)
    return [f"suppressed addresses: {total}" + (f" ({detail})" if detail else "")]


# -- formatting ------------------------------------------------------------------------------------


def _record_text(rec, tz: ZoneInfo) -> str:
    when = _t(rec.created_at, tz)
    if rec.status == "skipped":
        return f"skipped on {when}: {rec.reason}"
    return f"frozen on {when} (content {(rec.content_hash or '')[:12]})"


def _duration(runs) -> str:
    if not runs:
        return ""
    if any(r.finished_at is None for r in runs[-1:]):
        return f", running since {_t(runs[-1].started_at)}"
    seconds = sum(r.seconds or 0.0 for r in runs)
    n = f" in {len(runs)} runs" if len(runs) > 1 else ""
    return f", took {seconds:.1f}s{n} (started {_t(runs[0].started_at)})"


def _t(moment: datetime | None, tz: ZoneInfo | None = None) -> str:
    if moment is None:
        return "never"
    if tz is None:
        return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    return f"{moment.astimezone(tz):%Y-%m-%d %H:%M %Z}"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:200]


def _cap(first: list[str], total: int) -> str:
    """The first addresses of a list of `total`, and how many more."""
    return ", ".join(first) + (f" and {total - len(first)} more" if total > len(first) else "")
