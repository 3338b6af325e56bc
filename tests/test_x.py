"""X channel against a local X API: threads, duplicates, 429, 5xx, hangs, media, credentials."""

from __future__ import annotations

from datetime import timedelta

import pytest

from publisher.channels import ChannelDisabled
from publisher.models import State
from support.social_servers import CREDS, NOW, Hang, Harness, Reply, XServer, make_campaign, make_posts, make_rendered

pytest_plugins = ["support.social_servers"]  # fixtures creds, xs, make_harness


@pytest.fixture
def h(make_harness, xs, creds):
    return make_harness(x={"api_url": xs.url, "upload_url": xs.url, "timeout": 0.5})


def tweets(xs):
    return [r.json for r in xs.to("POST", "/2/tweets")]


def test_thread_replies_to_each_previous_tweet_with_oauth1(h, xs):
    rendered = make_rendered({"x": make_posts("x", 3)})
    report = h.send("x", rendered)
    assert (report.sent, report.failed, report.unknown, report.pending) == (3, 0, 0, 0)
    sent = tweets(xs)
    assert [t["text"] for t in sent] == [p.text for p in rendered.posts["x"]]
    assert "reply" not in sent[0]
    assert sent[1]["reply"] == {"in_reply_to_tweet_id": "1000000"}
    assert sent[2]["reply"] == {"in_reply_to_tweet_id": "1000001"}
    auth = xs.to("POST", "/2/tweets")[0].headers["authorization"]
    assert auth.startswith("OAuth ") and 'oauth_token="at-secret-3"' in auth
    assert "ats-secret-4" not in auth and "cs-secret-2" not in auth  # secrets sign, they are not sent
    rows = h.rows("x")
    assert [(rows[f"post:{i}"].state, rows[f"post:{i}"].remote_id) for i in range(3)] == [
        (State.SENT, "1000000"), (State.SENT, "1000001"), (State.SENT, "1000002")]


def test_rerun_posts_nothing_new(h, xs):
    rendered = make_rendered({"x": make_posts("x", 3)})
    h.send("x", rendered)
    again = h.send("x", rendered)
    assert (again.sent, again.skipped) == (0, 3)
    assert len(xs.to("POST", "/2/tweets")) == 3


def test_429_waits_until_the_announced_reset_then_posts(h, xs):
    reset = int(NOW.timestamp()) + 1
    xs.script("POST", "/2/tweets", Reply(429, {"title": "Too Many Requests"}, headers={"x-rate-limit-reset": str(reset)}))
    report = h.send("x", make_rendered({"x": make_posts("x", 2)}))
    assert (report.sent, report.pending) == (2, 0)
    assert len(xs.to("POST", "/2/tweets")) == 3  # the refused one, its retry, the reply
    assert len(xs.tweets) == 2


def test_429_with_a_far_reset_leaves_the_thread_pending_until_then(h, xs):
    reset = int(NOW.timestamp()) + 3600
    xs.script("POST", "/2/tweets", Reply(429, {}, headers={"x-rate-limit-reset": str(reset)}))
    rendered = make_rendered({"x": make_posts("x", 3)})
    report = h.send("x", rendered)
    assert (report.sent, report.pending) == (0, 3)
    assert len(xs.to("POST", "/2/tweets")) == 1  # no tight loop
    assert h.ledger.not_before("endurance/2026-W47", "x", "post:0") == NOW + timedelta(hours=1)
    assert all(r.state is State.PLANNED for r in h.rows("x").values())
    early = h.send("x", rendered)  # same clock: still before the reset, nothing is tried
    assert early.pending == 3 and len(xs.to("POST", "/2/tweets")) == 1
    h.now = NOW + timedelta(hours=1, minutes=1)
    later = h.send("x", rendered)
    assert later.sent == 3 and len(xs.tweets) == 3


def test_duplicate_403_is_read_as_already_posted_and_the_thread_goes_on(h, xs):
    posts = make_posts("x", 3)
    xs.tweets.append({"id": "999", "text": posts[1].text})  # posted by hand, earlier
    report = h.send("x", make_rendered({"x": posts}))
    assert (report.sent, report.found, report.failed) == (2, 1, 0)
    assert "2 sent, 1 found already posted" in report.line()
    rows = h.rows("x")
    assert rows["post:1"].state is State.SENT and rows["post:1"].remote_id is None
    assert "duplicate" in rows["post:1"].reply
    # the id of the duplicate is unknown: the next post hangs on the last known one
    assert tweets(xs)[2]["reply"] == {"in_reply_to_tweet_id": "1000001"}
    assert any("duplicate" in m for m in report.messages)


def test_500_is_unknown_never_retried_blindly_and_blocks_the_thread(h, xs):
    xs.script("POST", "/2/tweets", Reply(500, {"title": "Internal Error"}))
    rendered = make_rendered({"x": make_posts("x", 3)})
    report = h.send("x", rendered)
    assert (report.sent, report.unknown, report.pending) == (0, 1, 2)
    assert len(xs.to("POST", "/2/tweets")) == 1
    assert "--resend-unknown" in " ".join(report.messages)
    again = h.send("x", rendered)
    assert again.unknown == 1 and len(xs.to("POST", "/2/tweets")) == 1  # a rerun does not resend it
    h.resend_unknown = True
    forced = h.send("x", rendered)
    assert forced.sent == 3 and len(xs.tweets) == 3
    assert [t.get("reply") for t in tweets(xs)[1:]] == [  # [0] is the one answered with 500
        None, {"in_reply_to_tweet_id": "1000000"}, {"in_reply_to_tweet_id": "1000001"}]


def test_a_hanging_server_makes_the_post_unknown_and_it_is_not_retried(h, xs):
    posts = make_posts("x", 2)
    xs.script("POST", "/2/tweets", Hang(commit=True))  # X made it, the reply never came
    report = h.send("x", make_rendered({"x": posts}))
    assert (report.sent, report.unknown, report.pending) == (0, 1, 1)
    assert h.rows("x")["post:0"].state is State.UNKNOWN
    assert len(xs.to("POST", "/2/tweets")) == 1
    h.send("x", make_rendered({"x": posts}))
    assert len(xs.to("POST", "/2/tweets")) == 1
    # the user checks and resends: X refuses the duplicate, which marks it sent
    h.resend_unknown = True
    forced = h.send("x", make_rendered({"x": posts}))
    assert (forced.sent, forced.found) == (1, 1) and len(xs.tweets) == 2
    assert h.rows("x")["post:0"].state is State.SENT


def test_connection_refused_is_not_sent_and_stays_planned(tmp_path, creds):
    with XServer() as dead:
        url = dead.url
    harness = Harness(tmp_path, x={"api_url": url, "timeout": 0.5})
    channel = harness.channel("x")
    channel.backoff = (0.01,)
    report = channel.dispatch(make_rendered({"x": make_posts("x", 2)}), make_campaign())
    assert (report.pending, report.unknown, report.failed) == (2, 0, 0)
    row = harness.rows("x")["post:0"]
    assert row.state is State.PLANNED and "could not reach X" in row.reply


def test_media_upload_attaches_the_thumbnail(tmp_path, xs, creds):
    harness = Harness(tmp_path, x={"api_url": xs.url, "upload_url": xs.url, "media_upload": True})
    posts = make_posts("x", 2, image=f"{xs.url}/img/thumb.png")
    report = harness.send("x", make_rendered({"x": posts}))
    assert report.sent == 2
    upload = xs.to("POST", "/1.1/media/upload.json")
    assert len(upload) == 1 and b"\x89PNG" in upload[0].body
    assert tweets(xs)[0]["media"] == {"media_ids": ["710"]}
    assert "media" not in tweets(xs)[1]


def test_an_image_that_cannot_be_fetched_does_not_block_the_post(tmp_path, xs, creds):
    harness = Harness(tmp_path, x={"api_url": xs.url, "upload_url": xs.url, "media_upload": True})
    posts = make_posts("x", 1, image=f"{xs.url}/img/missing.png")
    report = harness.send("x", make_rendered({"x": posts}))
    assert report.sent == 1 and "media" not in tweets(xs)[0]
    assert xs.to("POST", "/1.1/media/upload.json") == []
    assert "image skipped" in harness.rows("x")["post:0"].reply


def test_missing_credentials_disable_the_channel_with_the_names(tmp_path, monkeypatch, creds):
    monkeypatch.delenv("PUBLISHER_X_ACCESS_TOKEN_SECRET")
    harness = Harness(tmp_path)
    with pytest.raises(ChannelDisabled) as exc:
        harness.channel("x")
    assert "PUBLISHER_X_ACCESS_TOKEN_SECRET" in str(exc.value)
    assert not any(v in str(exc.value) for v in CREDS.values())
