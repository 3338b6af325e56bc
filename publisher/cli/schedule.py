"""`publisher run` (one wake-up, for cron) and `publisher schedule` (runs for months): the scheduler's commands."""

from __future__ import annotations

import logging
import os

from publisher.app import Context, stop_on_signals
from publisher.config import load_campaigns
from publisher.editions import next_slot
from publisher.errors import DeliveryError, FeedError, PublisherError
from publisher.scheduler.runner import Runner, loop, scheduler_lease

log = logging.getLogger("publisher")


def command_schedule(ctx: Context, args) -> int:
    """`publisher schedule`: hold the lease, wake up every tick, fetch and send what is due, until SIGTERM."""
    campaigns = load_campaigns(ctx.settings)
    runner = Runner(ctx, campaigns)
    s = ctx.settings.schedule
    with stop_on_signals(ctx.stop), scheduler_lease(ctx):
        log.info("scheduler started (pid %d): %d campaign(s), wake-up every %s, fetch every %s, lateness %s",
                 os.getpid(), len(campaigns), s.tick, s.fetch_every, s.lateness)
        for c in campaigns:
            eid, at = next_slot(c, ctx.clock())
            log.info("%s: %s (%s), next edition %s at %s", c.name, c.schedule, c.timezone, eid, f"{at:%Y-%m-%d %H:%M %Z}")
        loop(runner, ctx.stop, ctx.clock)
    log.info("scheduler stopped; deliveries not sent are left pending for the next start")
    return 0


def command_run(ctx: Context, args) -> int:
    """`publisher run`: one wake-up at --now (or the clock): fetch if due, send every due edition, exit."""
    campaigns = load_campaigns(ctx.settings)
    runner = Runner(ctx, campaigns, emit=print)
    with stop_on_signals(ctx.stop), scheduler_lease(ctx):
        result = runner.wake(ctx.now)
    if not result.actions:
        print("nothing due; see 'publisher status' for the next runs")
    if result.stopped:
        print("stopped; what was not sent is pending: rerun 'publisher run' to continue (sent items are skipped)")
        return 0
    for line in result.errors:
        print(f"error: {line}")
    if result.errors:
        print("some jobs failed; fix the cause and rerun 'publisher run' (sent items are skipped)")
        return result.exit_code or PublisherError.exit_code
    if result.feed_failures:
        print(f"{result.feed_failures} feed source(s) failed; see 'publisher status'")
        return FeedError.exit_code
    if result.delivery_trouble:
        print("some deliveries are not done; see 'publisher status' and rerun 'publisher run' (sent items are skipped)")
        return DeliveryError.exit_code
    return 0
