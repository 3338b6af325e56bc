"""End to end: `publisher send` in a subprocess posts the sample week to local X, Mastodon and Bluesky
servers exactly once, and reports a channel without credentials as disabled while the others post."""

from __future__ import annotations

import pytest

from support.social_servers import CREDS, BlueskyServer, MastodonServer, XServer

NOW = "2026-11-23T08:30:00+01:00"


@pytest.fixture
def servers():
    with XServer() as xs, MastodonServer() as ms, BlueskyServer() as bs:
        yield xs, ms, bs


def live_project(project, xs, ms, bs):
    text = project.settings.read_text(encoding="utf-8").replace('delivery = "outbox"', 'delivery = "live"')
    project.write_settings(text)
    project.append_settings(f"""
[x]
api_url = "{xs.url}"
timeout = 5

[mastodon]
instance_url = "{ms.url}"
timeout = 5

[bluesky]
service_url = "{bs.url}"
card_thumbnail = false   # the sample feed's images are on the internet
timeout = 5
""")
    project.cli("fetch", check=True)


def send(project, env):
    return project.cli("--now", NOW, "send", "endurance", "--channel", "x", "--channel", "mastodon",
                       "--channel", "bluesky", env=env)


def test_send_posts_each_thread_once_and_a_rerun_posts_nothing(project, servers):
    xs, ms, bs = servers
    live_project(project, xs, ms, bs)
    first = send(project, CREDS)
    assert first.returncode == 0, first.stdout + first.stderr
    assert len(xs.tweets) >= 2 and len(ms.statuses) >= 2 and len(bs.records) >= 2
    n = len(xs.tweets)
    assert f"x endurance/2026-W47: {n} sent" in first.stdout
    # the X thread: each tweet replies to the one before
    chain = [t.get("reply", {}).get("in_reply_to_tweet_id") for t in xs.tweets]
    assert chain == [None] + [t["id"] for t in xs.tweets[:-1]]
    assert [s["in_reply_to_id"] for s in ms.statuses] == [None] + [s["id"] for s in ms.statuses[:-1]]
    assert all(r.headers.get("idempotency-key", "").startswith("publisher-") for r in ms.to("POST", "/api/v1/statuses"))
    assert all(r["value"]["langs"] == ["fr"] for r in bs.records.values())
    for secret in CREDS.values():
        if secret != CREDS["PUBLISHER_BLUESKY_HANDLE"]:
            assert secret not in first.stdout + first.stderr

    again = send(project, CREDS)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"x endurance/2026-W47: 0 sent, {n} already sent" in again.stdout
    assert (len(xs.to("POST", "/2/tweets")), len(ms.to("POST", "/api/v1/statuses"))) == (n, len(ms.statuses))
    assert len(bs.to("POST", "/xrpc/com.atproto.repo.createRecord")) == len(bs.records)


def test_missing_x_credentials_disable_x_and_the_others_still_post(project, servers):
    xs, ms, bs = servers
    live_project(project, xs, ms, bs)
    env = {k: v for k, v in CREDS.items() if not k.startswith("PUBLISHER_X_")}
    proc = send(project, env)
    assert "x: disabled: missing PUBLISHER_X_CONSUMER_KEY" in proc.stdout, proc.stdout + proc.stderr
    assert xs.requests == []
    assert ms.statuses and bs.records
