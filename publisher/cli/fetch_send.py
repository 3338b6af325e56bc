"""`publisher fetch` and `publisher send`: run the pipeline's stages and print what they did."""

from __future__ import annotations

import sys

from publisher.app import stop_on_signals
from publisher.channels.email.proof import send_test
from publisher.config import Campaign, load_campaigns
from publisher.editions import latest_slot_edition, parse_edition_id
from publisher.errors import ConfigError, DeliveryError, FeedError
from publisher.pipeline import Context, fetch, frozen, plan, render, send
from publisher.subscribers import normalise_address


def command_fetch(ctx: Context, args) -> int:
    results = fetch(ctx, args.feed)
    failed = 0
    for r in results:
        # a failed source is an error line on stderr (naming the source); the others are the report
        print(f"publisher: error: {r.line()}" if not r.ok else r.line(), file=sys.stderr if not r.ok else sys.stdout)
        failed += not r.ok
    if failed:
        where = "the --feed paths or URLs" if args.feed else f"[feeds].sources in {ctx.settings.source}"
        print(f"{failed} source(s) failed; fix them or check {where}, then rerun 'publisher fetch'", file=sys.stderr)
        return FeedError.exit_code
    return 0


def command_send(ctx: Context, args) -> int:
    if args.edition:
        parse_edition_id(args.edition)
    campaigns = load_campaigns(ctx.settings, args.campaigns)
    for campaign in campaigns:
        unknown = [n for n in args.channel or () if n not in campaign.channels]
        if unknown:
            raise ConfigError(f"--channel {unknown[0]}: campaign {campaign.name} does not use it (it uses {', '.join(campaign.channels)})",
                              hint=f"add it to channels in {campaign.source}, or name the campaigns that use it")
    if args.to:
        return _send_test(ctx, args, campaigns)
    # SIGTERM/SIGINT: finish the message or post in flight, leave the rest planned for the rerun
    with stop_on_signals(ctx.stop):
        reports = send(ctx, campaigns, args.edition, args.channel, resend_unknown=args.resend_unknown, join=args.join)
    trouble = False
    for r in reports:
        if r.channel != "-":
            print(r.line())
        for m in r.messages:
            print(m)
        if r.error:
            print(f"publisher: error: {r.error}", file=sys.stderr)
        trouble |= r.trouble
    if trouble:
        rerun = f"publisher send {' '.join(args.campaigns)}".strip()
        print(f"some deliveries are not done; see 'publisher status' and rerun '{rerun}' (sent items are skipped)")
        return DeliveryError.exit_code
    return 0


def _send_test(ctx: Context, args, campaigns: list[Campaign]) -> int:
    """`send --to ADDRESS`: a [TEST] copy of each edition to the given addresses; no ledger rows."""
    for text in args.to:  # before rendering anything: a typo in --to is the user's to fix
        try:
            normalise_address(text)
        except ValueError as exc:
            raise ConfigError(f"--to {text}: {exc}",
                              hint=f"rerun '{' '.join(['publisher send', *args.campaigns])} --to you@example.org'") from None
    not_sent = 0
    for campaign in campaigns:
        eid = args.edition or latest_slot_edition(campaign, ctx.now)
        p = plan(ctx, campaign, eid)
        if not p.edition.articles:
            print(f"{campaign.name} {eid}: no articles for this edition in the store; run 'publisher fetch'"
                  f" first, or pick another week with --edition")
            continue
        rendered = frozen(ctx, campaign, eid) or render(ctx, campaign, p)
        for done, line in send_test(ctx.settings, campaign, rendered, args.to, now=ctx.now):
            print(line)
            not_sent += not done
    if not_sent:
        print(f"{not_sent} test cop{'y was' if not_sent == 1 else 'ies were'} not sent; check [smtp] in"
              f" {ctx.settings.source}, then rerun the same command", file=sys.stderr)
        return DeliveryError.exit_code
    return 0
