"""The facts the due decision needs, read from the store: each edition's state, the last fetch, the last wake-up."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Sequence

from publisher.app import Context
from publisher.config import Campaign, parse_duration
from publisher.editions import alerts_in, is_alert_id
from publisher.scheduler.due import Due, EditionState, alert_floor, bounces_reason, candidate_editions, due
from publisher.store.db import Store, from_iso
from publisher.store.newsroom import gate

LEASE = "scheduler"  # the lease a running scheduler holds (one per store)
BOUNCES_STATE = "last_bounces"  # when the scheduler last read the bounce mailbox


def edition_state(store: Store, campaign: Campaign, edition_id: str, now: datetime) -> EditionState:
    """What the store says about one edition: skipped, or frozen with the channels done or waiting."""
    rec = store.edition_record(campaign.name, edition_id)
    g = gate(store, campaign.name, edition_id)
    if rec is None:
        return EditionState(approved=g.approved, held=g.held)
    if rec.status != "frozen":
        return EditionState(status=rec.status, approved=g.approved, held=g.held)
    key = f"{campaign.name}/{edition_id}"
    open_rows: dict[str, list[int]] = {}
    for ledger_channel, (total, ready) in store.open_deliveries(key, now).items():
        # ledger rows may be kept under "outbox:email" while the campaign says "email"
        acc = open_rows.setdefault(ledger_channel.split(":")[-1], [0, 0])
        acc[0] += total
        acc[1] += ready
    outcome = {r.channel: r.outcome for r in store.runs(key)}  # oldest first: the last one wins
    done, waiting = set(), set()
    for name in (campaign.alert_channels if is_alert_id(edition_id) else campaign.channels):
        total, ready = open_rows.get(name, (0, 0))
        last = outcome.get(name) or ""
        if total and not ready:
            waiting.add(name)
        elif not total and (last == "ok" or last.startswith("disabled")):
            done.add(name)
    return EditionState("frozen", frozenset(done), frozenset(waiting), g.approved, g.held)


def last_fetch(ctx: Context) -> datetime | None:
    """The last completed fetch: the scheduler's own record, or a manual `publisher fetch` of every source."""
    times = []
    mine = ctx.store.get_state("last_fetch")
    if mine:
        times.append(from_iso(mine))
    rows = {r.source: r.last_fetch for r in ctx.store.feed_states()}
    sources = ctx.settings.feeds.sources
    if sources and all(rows.get(s) for s in sources):
        times.append(min(rows[s] for s in sources))
    return max(times) if times else None


def last_tick(store: Store) -> datetime | None:
    value = store.get_state("last_tick")
    return from_iso(value) if value else None


def decide(ctx: Context, campaigns: Sequence[Campaign], now: datetime) -> list[Due]:
    """Read the facts for `now` from the store and return what is due (the pure `scheduler.due.due`)."""
    s = ctx.settings.schedule
    lateness, tick = s.lateness_window, last_tick(ctx.store)
    states = {}
    for c in campaigns:
        for eid in candidate_editions(c, now, lateness, tick):
            states[(c.name, eid)] = edition_state(ctx.store, c, eid, now)
    alerts = {}
    if any(c.alerts.enabled for c in campaigns):
        recent = ctx.store.articles_between(alert_floor(now, lateness, tick), now + timedelta(seconds=1))
        for c in campaigns:
            alerts[c.name] = alerts_in(c, recent, ctx.settings.series)
            for eid, _ in alerts[c.name]:
                states[(c.name, eid)] = edition_state(ctx.store, c, eid, now)
    actions = due(campaigns, now, states, lateness=lateness, fetch_every=s.fetch_interval,
                  last_fetch=last_fetch(ctx), last_tick=tick, lateness_text=s.lateness, alerts=alerts)
    b = ctx.settings.bounces
    if b.host:  # after the sends: reading the mailbox never delays an edition
        last = ctx.store.get_state(BOUNCES_STATE)
        reason = bounces_reason(now, parse_duration(b.every, "[bounces].every"), from_iso(last) if last else None)
        if reason:
            actions.append(Due("bounces", reason))
    return actions
