"""Wires the stages: fetch -> plan -> render (frozen once) -> dispatch, for `fetch`, `send` and `run`.

Returns what each stage did and prints nothing (cli/ does). Preview uses `plan` and `render` from here
too, never `freeze` or `dispatch`: it builds no channel object and writes no ledger row, so nothing it
does can send (it only writes its bundle's files).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Iterable, Sequence

from publisher.app import Context
from publisher.channels import ChannelDisabled, DispatchContext, DispatchReport, registry
from publisher.config import Campaign
from publisher.editions import Plan, latest_slot_edition, plan_edition, window
from publisher.errors import DeliveryError, LockedError, PublisherError
from publisher.ingest.feeds import fetch_all
from publisher.models import Article, RenderedEdition, rendered_from_dict, rendered_to_dict
from publisher.render.email import Renderer
from publisher.store.db import Store
from publisher.store.ledger import new_holder

log = logging.getLogger("publisher")


# -- fetch ---------------------------------------------------------------------------------------


def fetch(ctx: Context, sources: Sequence[str] | None = None):
    """Fetch every source (or the given ones) into the store; one bad source never stops the others."""
    # Configured paths are relative to settings.toml's folder; --feed paths to the working folder.
    root = None if sources else ctx.settings.root
    return fetch_all(list(sources or ctx.settings.feeds.sources), ctx.store, ctx.settings.feeds,
                     now=ctx.now, progress=ctx.progress, root=root)


# -- plan and render -----------------------------------------------------------------------------


def plan(ctx: Context, campaign: Campaign, edition_id: str, articles: Iterable[Article] | None = None) -> Plan:
    """The edition of `campaign` for `edition_id`, from the given articles or the store."""
    if articles is None:
        start, end = window(edition_id, campaign.tz)
        articles = ctx.store.articles_between(start, end)
    return plan_edition(campaign, edition_id, articles, ctx.settings.series)


def render(ctx: Context, campaign: Campaign, p: Plan) -> RenderedEdition:
    """The edition rendered with the campaign's templates: what preview shows and send freezes."""
    return Renderer(ctx.settings).render(p.edition, campaign)


def frozen(ctx: Context, campaign: Campaign, edition_id: str) -> RenderedEdition | None:
    """The rendering frozen by an earlier send of this edition, if any."""
    return frozen_rendering(ctx.store, campaign.name, edition_id)


def frozen_rendering(store: Store, campaign: str, edition_id: str) -> RenderedEdition | None:
    """The frozen rendering of an edition in `store`, if any (the archive reads it too)."""
    row = store.edition_record(campaign, edition_id)
    if row is None or row.status != "frozen" or not row.rendered:
        return None
    return rendered_from_dict(json.loads(row.rendered))


def freeze(ctx: Context, rendered: RenderedEdition) -> RenderedEdition:
    """Record the rendering once; a later send of the same edition sends exactly these bytes."""
    e = rendered.edition
    row = ctx.store.freeze_edition(e.campaign, e.id, rendered.content_hash,
                                   json.dumps(rendered_to_dict(rendered), ensure_ascii=False), ctx.now)
    return rendered_from_dict(json.loads(row.rendered))


def prepare(ctx: Context, campaign: Campaign, edition_id: str, *, record_skip: bool = True) -> tuple[RenderedEdition | None, str | None]:
    """The frozen rendering of an edition, rendering and freezing it on first use; or the skip reason."""
    done = frozen(ctx, campaign, edition_id)
    if done is not None:
        return done, None
    p = plan(ctx, campaign, edition_id)
    if p.skip_reason:
        if record_skip:
            ctx.store.record_skip(campaign.name, edition_id, p.skip_reason, ctx.now)
        return None, p.skip_reason
    return freeze(ctx, render(ctx, campaign, p)), None


# -- dispatch ------------------------------------------------------------------------------------


def dispatch(ctx: Context, campaign: Campaign, rendered: RenderedEdition, channels: Sequence[str] | None = None,
             *, resend_unknown: bool = False, join: bool = False) -> list[DispatchReport]:
    """Send a frozen edition on the campaign's channels (or the given ones), holding the edition's lease
    (`join`: shared with other senders of this edition, each claiming its own batches of recipients)."""
    key = rendered.edition.key
    for name in channels or ():
        if name not in campaign.channels:
            raise DeliveryError(f"campaign {campaign.name} does not use channel {name!r} (it uses {', '.join(campaign.channels)})",
                                hint=f"add it to channels in {campaign.source}, or drop --channel {name}")
    lease = f"send:{key}"
    try:  # held until we return or die, whatever the clocks say; shared with the other senders under --join
        ctx.store.acquire_lease(lease, ctx.clock(), shared=join)
    except LockedError as exc:
        hint = ("it was started without --join: wait for it to finish" if join else
                "wait for it to finish, or stop that process (its lease ends with it); a sender started with --join"
                " shares the edition with other --join senders")
        raise LockedError(exc.message, hint=hint) from None
    outbox = ctx.settings.path(ctx.settings.publisher.outbox) if ctx.settings.publisher.delivery == "outbox" else None
    ledger = ctx.ledger().hold(new_holder())  # this sender's claims carry its id; recovery elsewhere spares them
    dctx = DispatchContext(settings=ctx.settings, ledger=ledger, now=ctx.now, progress=ctx.progress,
                           stop=ctx.stop, outbox=outbox, resend_unknown=resend_unknown)
    reports: list[DispatchReport] = []
    alone: list[str] = []  # under --join, the per-channel leases of channels that post in order (social)
    try:
        for name in channels or campaign.channels:
            if ctx.stop.is_set():
                break
            spec = registry.get(name)
            if join and spec.kind != "email":
                # a thread is posted in order by one sender: the others leave this network to it
                try:
                    ctx.store.acquire_lease(f"{lease}/{name}", ctx.clock())
                except LockedError as exc:
                    r = DispatchReport(channel=name, edition_key=key)
                    r.messages.append(f"{name}: left to the sender already posting it ({exc.message})")
                    reports.append(r)
                    continue
                alone.append(f"{lease}/{name}")
            try:
                channel = spec.make(ctx.settings, ctx.settings.channels[name], dctx)
            except ChannelDisabled as exc:
                r = DispatchReport(channel=name, edition_key=key)
                r.messages.append(f"{name}: disabled: {exc}")
                reports.append(r)
                run = ctx.store.start_run(key, name, ctx.clock())
                ctx.store.finish_run(run, ctx.clock(), 0.0, f"disabled: {exc}", r.line())
                continue
            # the runs table says when each channel started and finished, and how it ended (publisher status)
            run, started, outcome, r = ctx.store.start_run(key, name, ctx.clock()), time.monotonic(), "crashed", None
            try:
                r = channel.dispatch(rendered, campaign)
                outcome = "stopped" if ctx.stop.is_set() and r.pending else "ok"
                reports.append(r)
            except PublisherError as exc:  # one channel's failure never stops the others
                r = DispatchReport(channel=name, edition_key=key, failed=1)
                r.messages.append(f"{name}: {exc}")
                reports.append(r)
                outcome = f"error: {exc}"
            finally:
                ctx.store.finish_run(run, ctx.clock(), time.monotonic() - started, outcome, r.line() if r else "")
    finally:
        for name in alone:
            ctx.store.release_lease(name)
        ledger.let_go()
        ctx.store.release_lease(lease)
    return reports


def send(ctx: Context, campaigns: Sequence[Campaign], edition_id: str | None = None,
         channels: Sequence[str] | None = None, *, resend_unknown: bool = False, join: bool = False) -> list[DispatchReport]:
    """Send the named (or the latest due) edition of each campaign; thin weeks are skipped and reported."""
    reports: list[DispatchReport] = []
    for campaign in campaigns:
        eid = edition_id or latest_slot_edition(campaign, ctx.now)
        rendered, skip = prepare(ctx, campaign, eid)
        if rendered is None:
            r = DispatchReport(channel="-", edition_key=f"{campaign.name}/{eid}")
            r.messages.append(f"{campaign.name} {eid}: skipped ({skip})")
            reports.append(r)
            continue
        reports.extend(dispatch(ctx, campaign, rendered, channels, resend_unknown=resend_unknown, join=join))
    return reports
