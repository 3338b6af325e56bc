"""`publisher status`: next runs, last fetches, the last edition per channel with its ledger counts,
failures with reasons, unknown rows listed, skipped editions, suppression, durations, the scheduler lease."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import pytest

from publisher.app import Context, load_settings
from publisher.cli.status import report
from publisher.config import load_campaigns
from publisher.models import State
from publisher.scheduler.runner import scheduler_lease
from support.query_plans import captured, deliveries_steps, unbounded

UTC = timezone.utc
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # Monday 11:00 in Paris
KEY = "endurance/2026-W47"


@pytest.fixture
def ctx(project):
    c = Context(settings=load_settings(project.settings), now=NOW)
    yield c
    c.close()


def seed(ctx: Context) -> None:
    """A store as a week of real use leaves it."""
    s, led = ctx.store, ctx.ledger()
    src = ctx.settings.feeds.sources
    s.save_feed_state(src[0], now=NOW - timedelta(minutes=20), result=f"{src[0]}: 3 new, 1 updated", ok=True)
    s.save_feed_state(src[1], now=NOW - timedelta(minutes=20), result="timed out after 20 s", ok=False)
    s.freeze_edition("endurance", "2026-W47", "c0ffee" * 8, "{}", NOW - timedelta(hours=3))
    s.record_skip("endurance", "2026-W46", "missed: slot was 2026-11-16 08:00 CET, lateness is 24h", NOW - timedelta(days=6))
    s.record_skip("gt", "2026-W47", "thin week: 0 article(s), min_articles is 1", NOW - timedelta(hours=1))
    run = s.start_run(KEY, "email", NOW - timedelta(hours=3))
    s.finish_run(run, NOW - timedelta(hours=3) + timedelta(seconds=42), 41.7, "stopped", "email: 3 sent, 1 pending")
    run = s.start_run(KEY, "x", NOW - timedelta(hours=3))
    s.finish_run(run, NOW - timedelta(hours=3), 1.25, "error: x: login refused (401); check PUBLISHER_X_*", "x: 0 sent")
    targets = ["a@example.org", "b@example.org", "c@example.org", "d@example.org", "e@example.org",
               "f@example.org", "g@example.org"]
    led.plan(KEY, "email", targets)
    for t in targets[:6]:
        assert led.claim_one(KEY, "email", t)
    led.finish(KEY, "email", [("a@example.org", State.SENT, "<1@x>", "250 ok"),
                              ("b@example.org", State.SENT, "<2@x>", "250 ok"),
                              ("c@example.org", State.SENT, "<3@x>", "250 ok"),
                              ("d@example.org", State.FAILED, None, "550 5.1.1 No such user"),
                              ("e@example.org", State.FAILED, None, "550 5.1.1 No such user")])
    led.recover(KEY, "email")  # f@ was on the wire when the process died: unknown
    s.conn.execute("INSERT INTO suppression (email, reason, detail, created_at) VALUES"
                   " ('d@example.org', 'hard-bounce', '550', '2026-11-23T07:00:00+00:00'),"
                   " ('z@example.org', 'unsubscribed', NULL, '2026-11-20T07:00:00+00:00')")
    s.set_state("last_tick", "2026-11-23T09:59:00+00:00", NOW)


def test_status_reports_every_part(ctx):
    seed(ctx)
    text = "\n".join(report(ctx, load_campaigns(ctx.settings), NOW))
    src = ctx.settings.feeds.sources
    assert "scheduler: not running (last wake-up 2026-11-23 09:59:00 UTC)" in text
    # last fetch per feed with its result, and when the next one is due
    feeds = {line.split()[0]: line for line in text.splitlines() if line.startswith("  samples/")}
    assert feeds[src[0]].endswith("2026-11-23 09:40:00 UTC  ok: 3 new, 1 updated")
    assert feeds[src[1]].endswith("2026-11-23 09:40:00 UTC  FAILED: timed out after 20 s")
    assert "imsa/" not in text and "due now: 2026-W47 on email, x, mastodon, bluesky (slot 2026-11-23 08:30 CET, 2h30m late)" in text
    assert "next fetch 2026-11-23 10:40:00 UTC" in text
    # next run per campaign, in its time zone
    assert "next run: 2026-W48 at 2026-11-30 08:00 CET" in text
    # the last edition, and per channel: counts, failures by reason, unknown listed, how long it took
    assert "last edition: 2026-W47, frozen on 2026-11-23 08:00 CET (content c0ffeec0ffee)" in text
    assert "email 2026-W47: sent 3, pending 1, failed 2, unknown 1, took 41.7s (started 2026-11-23 07:00:00 UTC)" in text
    assert "failed (2): 550 5.1.1 No such user: d@example.org, e@example.org" in text
    assert "unknown (1): f@example.org; resend only with 'publisher send endurance --edition 2026-W47 --channel email --resend-unknown'" in text
    assert "stopped before the end; the scheduler resumes it" in text
    assert "x 2026-W47: sent 0, pending 0, failed 0, unknown 0, took 1.2s" in text
    assert "last run: error: x: login refused (401); check PUBLISHER_X_*" in text
    assert "mastodon: never sent" in text
    # the unfinished edition is due again now (the same decision `publisher run` makes)
    assert "due now: 2026-W47 on email, x, mastodon, bluesky (resuming (slot was 2026-11-23 08:00 CET))" in text
    # skipped editions with their reasons
    assert "skipped 2026-W46: missed: slot was 2026-11-16 08:00 CET, lateness is 24h" in text
    assert "skipped 2026-W47: thin week: 0 article(s), min_articles is 1" in text
    assert "suppressed addresses: 2 (hard-bounce 1, unsubscribed 1)" in text


def test_status_of_one_edition_and_of_a_running_scheduler(ctx):
    seed(ctx)
    campaigns = load_campaigns(ctx.settings, ["endurance"])
    with scheduler_lease(ctx):
        text = "\n".join(report(ctx, campaigns, ctx.clock(), "2026-W46"))
        assert f"scheduler: running, pid {os.getpid()} on " in text
    assert "edition 2026-W46: skipped on 2026-11-17 11:00 CET: missed: slot was 2026-11-16 08:00 CET" in text
    assert "    email 2026-W46: sent 0, pending 0, failed 0, unknown 0" in text
    assert "gt:" not in text
    after = "\n".join(report(ctx, campaigns, ctx.clock()))
    assert "scheduler: not running" in after  # the lease is released on the way out


def test_status_on_an_empty_store_says_what_is_next(project):
    proc = project.cli("--now", "2026-11-25T12:00:00+01:00", "status", "rallycross")
    assert proc.returncode == 0, proc.stderr
    assert "scheduler: not running (never woke up on this store)" in proc.stdout
    assert "never fetched" in proc.stdout
    assert "last edition: none sent yet" in proc.stdout
    assert "next run: 2026-W48 at 2026-11-30" in proc.stdout


def test_status_rejects_unknown_campaign_and_bad_edition_in_one_line(project):
    proc = project.cli("status", "nascar")
    assert proc.returncode == 2 and "unknown campaign 'nascar'" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = project.cli("status", "--edition", "2026-47")
    assert proc.returncode == 2 and "not an ISO week like 2026-W47" in proc.stderr


def test_status_lists_are_cut_short_and_read_no_whole_table(ctx):
    """A large failed edition: the top reasons with their first addresses and how many more, one line for
    the other reasons, the first unknown addresses; every ledger query of the report reads an index range."""
    seed(ctx)
    led = ctx.ledger()
    bulk = [f"bulk{i:03d}@example.org" for i in range(160)]
    led.plan(KEY, "email", bulk)
    assert len(led.claim_range(KEY, "email", 1000, "", NOW)) == 161  # g@ was still planned
    # 12 more reasons: reason k has 12 - k rows; the last two and seed's 2 "No such user" get one line
    results = []
    for k in range(12):
        results += [(bulk[len(results) + j], State.FAILED, None, f"550 5.7.1 rejected ({k:02d})") for j in range(12 - k)]
    led.finish(KEY, "email", results)
    led.recover(KEY, "email")  # 82 bulk rows and g@ were on the wire: unknown, with f@ from seed
    with captured(ctx.store.conn) as statements:
        text = "\n".join(report(ctx, load_campaigns(ctx.settings, ["endurance"]), NOW))
    assert "email 2026-W47: sent 3, pending 0, failed 80, unknown 84" in text
    failed = [line.strip() for line in text.splitlines() if line.strip().startswith("failed (")]
    assert failed[0] == ("failed (12): 550 5.7.1 rejected (00): bulk000@example.org, bulk001@example.org, bulk002@example.org,"
                         " bulk003@example.org, bulk004@example.org, bulk005@example.org, bulk006@example.org,"
                         " bulk007@example.org, bulk008@example.org, bulk009@example.org and 2 more")
    assert failed[9] == "failed (3): 550 5.7.1 rejected (09): bulk072@example.org, bulk073@example.org, bulk074@example.org"
    assert failed[10:] == ["failed (5): other reasons, less frequent than these 10"]
    unknown = next(line for line in text.splitlines() if "unknown (" in line).strip()
    assert unknown.startswith("unknown (84): bulk078@example.org, bulk079@example.org,")
    assert ", bulk087@example.org and 74 more; resend only with 'publisher send endurance --edition 2026-W47" in unknown
    steps = deliveries_steps(ctx.store.conn, statements)
    assert len(steps) >= 10  # channels, counts, failures, unknown, open rows: all of them checked
    assert not unbounded(steps), unbounded(steps)
