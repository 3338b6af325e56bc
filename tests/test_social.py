"""The shared social loop: outbox mode, thread resume, spacing, daily cap, stop, per-article posts,
crash recovery, and a disabled channel that does not stop the others."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

from publisher.app import Context
from publisher.config import PublisherSettings
from publisher.models import State
from publisher.pipeline import dispatch
from support.social_servers import (
    CREDS,
    NOW,
    BlueskyServer,
    Harness,
    MastodonServer,
    Normal,
    Reply,
    make_campaign,
    make_posts,
    make_rendered,
)

pytest_plugins = ["support.social_servers"]  # fixtures creds, xs

KEY = "endurance/2026-W47"


def test_outbox_mode_writes_json_per_post_and_calls_nothing(tmp_path, monkeypatch):
    for k in CREDS:
        monkeypatch.delenv(k, raising=False)  # no credentials needed in outbox mode
    harness = Harness(tmp_path, outbox=True, x={"api_url": "http://127.0.0.1:9"}, mastodon={"instance_url": "http://127.0.0.1:9"})
    rendered = make_rendered({n: make_posts(n, 3) for n in ("x", "mastodon", "bluesky")})
    for network in ("x", "mastodon", "bluesky"):
        report = harness.send(network, rendered)
        assert (report.channel, report.sent) == (f"outbox:{network}", 3)
        folder = tmp_path / "var" / "outbox" / "endurance" / "2026-W47" / network
        docs = [json.loads((folder / f"post-{i}.json").read_text(encoding="utf-8")) for i in range(3)]
        assert [d["text"] for d in docs] == [p.text for p in rendered.posts[network]]
        assert [d["in_reply_to"] for d in docs] == [None, f"endurance/2026-W47/{network}/post-0.json",
                                                      f"endurance/2026-W47/{network}/post-1.json"]
        assert set(harness.rows(f"outbox:{network}")) == {"post:0", "post:1", "post:2"}
        assert harness.rows(network) == {}  # live rows untouched
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "var" / "outbox").rglob("*.json")}
    again = harness.send("x", rendered)
    assert (again.sent, again.skipped) == (0, 3)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "var" / "outbox").rglob("*.json")} == before


def test_thread_resumes_after_a_partial_failure_replying_to_the_last_sent(tmp_path, xs, creds):
    harness = Harness(tmp_path, x={"api_url": xs.url})
    rendered = make_rendered({"x": make_posts("x", 4)})
    xs.script("POST", "/2/tweets", Normal(),
              Reply(429, {}, headers={"x-rate-limit-reset": str(int(NOW.timestamp()) + 7200)}))
    first = harness.send("x", rendered)
    assert (first.sent, first.pending) == (1, 3)
    harness.now = NOW + timedelta(hours=3)
    second = harness.send("x", rendered)
    assert (second.sent, second.skipped) == (3, 1)
    replies = [r.json.get("reply", {}).get("in_reply_to_tweet_id") for r in xs.to("POST", "/2/tweets")]
    assert replies == [None, "1000000", "1000000", "1000001", "1000002"]  # the 429'd post 1 was resent once
    assert [r.state for r in harness.rows("x").values()] == [State.SENT] * 4


def test_bluesky_thread_resume_keeps_root_and_parent(tmp_path, creds):
    with BlueskyServer() as bs:
        harness = Harness(tmp_path, bluesky={"service_url": bs.url})
        rendered = make_rendered({"bluesky": make_posts("bluesky", 3)})
        far = str(int(NOW.timestamp()) + 7200)
        bs.script("POST", "/xrpc/com.atproto.repo.createRecord", Normal(), Reply(429, {"error": "RateLimitExceeded"},
                                                                                  headers={"ratelimit-reset": far}))
        first = harness.send("bluesky", rendered)
        assert (first.sent, first.pending) == (1, 2)
        harness.now = NOW + timedelta(hours=3)
        second = harness.send("bluesky", rendered)
        assert (second.sent, second.skipped) == (2, 1)
        creates = [r.json for r in bs.to("POST", "/xrpc/com.atproto.repo.createRecord")]
        post0, post1 = creates[0], creates[2]
        uri0 = f"at://{bs.did}/app.bsky.feed.post/{post0['rkey']}"
        uri1 = f"at://{bs.did}/app.bsky.feed.post/{post1['rkey']}"
        assert post1["record"]["reply"]["root"]["uri"] == uri0 == post1["record"]["reply"]["parent"]["uri"]
        assert creates[3]["record"]["reply"]["root"]["uri"] == uri0
        assert creates[3]["record"]["reply"]["parent"]["uri"] == uri1
        assert len(bs.records) == 3


def test_spacing_leaves_the_rest_pending_until_its_time(tmp_path, xs, creds):
    harness = Harness(tmp_path, x={"api_url": xs.url, "max_wait": "5m"})
    rendered = make_rendered({"x": make_posts("x", 3)})
    campaign = make_campaign(spacing="30m")
    first = harness.send("x", rendered, campaign)
    assert (first.sent, first.pending) == (1, 2)
    assert harness.ledger.not_before(KEY, "x", "post:1") == NOW + timedelta(minutes=30)
    assert any("spacing" in m for m in first.messages)
    harness.now = NOW + timedelta(minutes=31)
    second = harness.send("x", rendered, campaign)
    assert (second.sent, second.pending) == (1, 1)
    harness.now = NOW + timedelta(minutes=62)
    assert harness.send("x", rendered, campaign).sent == 1
    assert [r.json.get("reply") for r in xs.to("POST", "/2/tweets")][2] == {"in_reply_to_tweet_id": "1000001"}


def test_daily_cap_counts_every_edition_of_the_account(tmp_path, xs, creds):
    harness = Harness(tmp_path, x={"api_url": xs.url})
    campaign = make_campaign(mode="per_article", daily_cap=3)
    other = make_rendered({"x": make_posts("x", 2)}, edition_id="2026-W46")
    assert harness.send("x", other, campaign).sent == 2
    rendered = make_rendered({"x": tuple(dataclasses.replace(p, text=p.text + " (W47)") for p in make_posts("x", 3))})
    report = harness.send("x", rendered, campaign)
    assert (report.sent, report.pending) == (1, 2)
    assert any("daily cap of 3" in m for m in report.messages)
    harness.now = NOW + timedelta(days=1, minutes=1)
    assert harness.send("x", rendered, campaign).sent == 2


def test_per_article_posts_are_not_chained_and_a_failure_does_not_block_the_next(tmp_path, xs, creds):
    harness = Harness(tmp_path, x={"api_url": xs.url})
    xs.script("POST", "/2/tweets", Reply(400, {"title": "Invalid Request", "detail": "bad text"}))
    report = harness.send("x", make_rendered({"x": make_posts("x", 3)}), make_campaign(mode="per_article"))
    assert (report.sent, report.failed) == (2, 1)
    assert all("reply" not in r.json for r in xs.to("POST", "/2/tweets"))
    assert "bad text" in harness.rows("x")["post:0"].reply


def test_stop_flag_sends_nothing_more(tmp_path, xs, creds):
    harness = Harness(tmp_path, x={"api_url": xs.url})
    harness.stop.set()
    report = harness.send("x", make_rendered({"x": make_posts("x", 2)}))
    assert (report.sent, report.pending) == (0, 2) and xs.to("POST", "/2/tweets") == []


def test_a_row_left_sending_by_a_dead_process_is_unknown_on_x_but_checked_on_bluesky(tmp_path, xs, creds):
    with BlueskyServer() as bs:
        harness = Harness(tmp_path, x={"api_url": xs.url}, bluesky={"service_url": bs.url})
        rendered = make_rendered({"x": make_posts("x", 1), "bluesky": make_posts("bluesky", 1)})
        for ch in ("x", "bluesky"):  # a process claimed the post, then died before recording the reply
            harness.ledger.plan(KEY, ch, ["post:0"])
            assert harness.ledger.claim_one(KEY, ch, "post:0")
        x_report = harness.send("x", rendered)
        assert x_report.unknown == 1 and xs.to("POST", "/2/tweets") == []
        assert any("on the wire" in m for m in x_report.messages)
        bsky = harness.send("bluesky", rendered)
        assert bsky.sent == 1 and len(bs.records) == 1


def test_a_disabled_channel_is_reported_and_the_others_still_post(tmp_path, xs, monkeypatch):
    monkeypatch.setenv("PUBLISHER_MASTODON_ACCESS_TOKEN", CREDS["PUBLISHER_MASTODON_ACCESS_TOKEN"])
    for k in ("PUBLISHER_X_CONSUMER_KEY", "PUBLISHER_BLUESKY_APP_PASSWORD"):
        monkeypatch.delenv(k, raising=False)
    with MastodonServer() as ms:
        harness = Harness(tmp_path, mastodon={"instance_url": ms.url})
        settings = dataclasses.replace(harness.settings, publisher=PublisherSettings(delivery="live"))
        ctx = Context(settings=settings, now=NOW, fixed_now=True)
        rendered = make_rendered({n: make_posts(n, 2) for n in ("x", "mastodon")})
        reports = dispatch(ctx, make_campaign(), rendered, ["x", "mastodon"])
        by = {r.channel: r for r in reports}
        assert "disabled" in by["x"].messages[0] and "PUBLISHER_X_CONSUMER_KEY" in by["x"].messages[0]
        assert by["mastodon"].sent == 2 and len(ms.statuses) == 2
        ctx.close()
