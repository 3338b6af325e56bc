"""Mastodon channel against a local instance: idempotency keys, threads, 5xx, hangs, 429, limits, media."""

from __future__ import annotations

from datetime import timedelta

import pytest

from publisher.channels import ChannelDisabled
from publisher.channels.mastodon import idempotency_key
from publisher.channels.posting import PostKey
from publisher.models import State
from support.social_servers import (
    NOW,
    SLOT,
    Hang,
    Harness,
    MastodonServer,
    Reply,
    make_campaign,
    make_posts,
    make_rendered,
    post_key,
)

pytest_plugins = ["support.social_servers"]  # fixtures creds, ms, make_harness

STATUSES = "/api/v1/statuses"


@pytest.fixture
def h(make_harness, ms, creds):
    return make_harness(mastodon={"instance_url": ms.url, "timeout": 0.5})


def key(i: int) -> str:
    return idempotency_key(post_key("mastodon", i))


def test_thread_with_visibility_language_and_an_idempotency_key_on_every_create(h, ms):
    rendered = make_rendered({"mastodon": make_posts("mastodon", 3)})
    report = h.send("mastodon", rendered, make_campaign(visibility="unlisted"))
    assert report.sent == 3
    creates = ms.to("POST", STATUSES)
    assert [r.form["status"][0] for r in creates] == [p.text for p in rendered.posts["mastodon"]]
    assert [r.form.get("in_reply_to_id", [None])[0] for r in creates] == [None, "110000", "110001"]
    assert {r.form["visibility"][0] for r in creates} == {"unlisted"}
    assert {r.form["language"][0] for r in creates} == {"fr"}
    assert [r.headers["idempotency-key"] for r in creates] == [key(0), key(1), key(2)]
    assert len({key(0), key(1), key(2)}) == 3
    assert creates[0].headers["authorization"] == "Bearer masto-secret-5"
    assert [h.rows("mastodon")[f"post:{i}"].remote_id for i in range(3)] == ["110000", "110001", "110002"]


def test_settings_visibility_wins_over_the_campaign(tmp_path, ms, creds):
    harness = Harness(tmp_path, mastodon={"instance_url": ms.url, "visibility": "private"})
    harness.send("mastodon", make_rendered({"mastodon": make_posts("mastodon", 1)}), make_campaign(visibility="public"))
    assert ms.to("POST", STATUSES)[0].form["visibility"] == ["private"]


def test_rerun_posts_nothing_new(h, ms):
    rendered = make_rendered({"mastodon": make_posts("mastodon", 2)})
    h.send("mastodon", rendered)
    again = h.send("mastodon", rendered)
    assert (again.sent, again.skipped) == (0, 2) and len(ms.to("POST", STATUSES)) == 2


def test_500_is_retried_with_the_same_key(h, ms):
    ms.script("POST", STATUSES, Reply(500, {"error": "boom"}, commit=True))  # it was made, then the 500
    channel = h.channel("mastodon")
    channel.backoff = (0.01, 0.01)
    report = channel.dispatch(make_rendered({"mastodon": make_posts("mastodon", 2)}), make_campaign())
    assert (report.sent, report.unknown) == (2, 0)
    first = [r for r in ms.to("POST", STATUSES) if r.headers["idempotency-key"] == key(0)]
    assert len(first) == 2  # the 500 and its retry, same key
    assert len(ms.statuses) == 2  # the key kept the retry from making a second status
    assert ms.to("POST", STATUSES)[-1].form["in_reply_to_id"] == ["110000"]


def test_hang_is_unknown_then_the_next_run_retries_safely_within_the_key_window(h, ms):
    ms.script("POST", STATUSES, Hang(commit=True))
    rendered = make_rendered({"mastodon": make_posts("mastodon", 2)})
    report = h.send("mastodon", rendered)
    assert (report.sent, report.unknown, report.pending) == (0, 1, 1)
    assert len(ms.to("POST", STATUSES)) == 1  # not retried in the same run
    h.now = NOW + timedelta(minutes=10)
    ms.skew = timedelta(minutes=10)  # the instance's clock too: its reply comes 10 minutes after the status
    later = h.send("mastodon", rendered)
    # the retry got the status the hung request had made: reported as found, not as sent
    assert (later.sent, later.found) == (1, 1) and "1 sent, 1 found already posted" in later.line()
    assert len(ms.statuses) == 2
    rows = h.rows("mastodon")
    assert rows["post:0"].remote_id == "110000" and rows["post:0"].state is State.SENT
    assert ms.to("POST", STATUSES)[-1].form["in_reply_to_id"] == ["110000"]


def test_an_unknown_older_than_the_key_window_waits_for_the_user(h, ms):
    ms.script("POST", STATUSES, Hang())
    rendered = make_rendered({"mastodon": make_posts("mastodon", 1)})
    h.send("mastodon", rendered)
    h.now = NOW + timedelta(hours=2)
    report = h.send("mastodon", rendered)
    assert report.unknown == 1 and len(ms.to("POST", STATUSES)) == 1
    h.resend_unknown = True
    assert h.send("mastodon", rendered).sent == 1


def test_429_waits_for_the_reset_the_instance_announces(h, ms):
    reset = (NOW + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    ms.script("POST", STATUSES, Reply(429, {"error": "Too many requests"}, headers={"X-RateLimit-Reset": reset}))
    report = h.send("mastodon", make_rendered({"mastodon": make_posts("mastodon", 1)}))
    assert report.sent == 1 and len(ms.to("POST", STATUSES)) == 2


def test_the_instance_character_limit_is_read_and_enforced(tmp_path, creds):
    with MastodonServer(max_characters=60) as small:
        harness = Harness(tmp_path, mastodon={"instance_url": small.url})
        report = harness.send("mastodon", make_rendered({"mastodon": make_posts("mastodon", 2)}))
        assert (report.sent, report.failed, report.pending) == (0, 1, 1)
        assert small.to("GET", "/api/v1/instance/") and small.to("POST", STATUSES) == []
        assert "allows 60" in harness.rows("mastodon")["post:0"].reply


def test_a_configured_limit_skips_the_instance_lookup(tmp_path, ms, creds):
    harness = Harness(tmp_path, mastodon={"instance_url": ms.url, "max_characters": 1000})
    assert harness.send("mastodon", make_rendered({"mastodon": make_posts("mastodon", 1)})).sent == 1
    assert ms.to("GET", "/api/v1/instance/") == []


def test_media_upload_attaches_the_thumbnail(tmp_path, ms, creds):
    harness = Harness(tmp_path, mastodon={"instance_url": ms.url, "media_upload": True})
    posts = make_posts("mastodon", 1, image=f"{ms.url}/img/thumb.png", card={"uri": "u", "title": "Toyota sacrée"})
    assert harness.send("mastodon", make_rendered({"mastodon": posts})).sent == 1
    media = ms.to("POST", "/api/v2/media")
    assert len(media) == 1 and b"\x89PNG" in media[0].body and "Toyota sacr".encode() in media[0].body
    assert ms.to("POST", STATUSES)[0].form["media_ids[]"] == ["m710"]
    # async media: the status is created only once the instance says the file is processed
    polls = ms.to("GET", "/api/v1/media/m710")
    assert len(polls) == ms.processing_polls + 1
    assert ms.requests.index(polls[-1]) < ms.requests.index(ms.to("POST", STATUSES)[0])


def test_401_fails_without_leaking_the_token(h, ms):
    ms.script("POST", STATUSES, Reply(401, {"error": "The access token is invalid"}))
    report = h.send("mastodon", make_rendered({"mastodon": make_posts("mastodon", 1)}))
    assert report.failed == 1
    reply = h.rows("mastodon")["post:0"].reply
    assert "PUBLISHER_MASTODON_ACCESS_TOKEN" in reply and "masto-secret-5" not in reply
    assert not any("masto-secret-5" in m for m in report.messages)


def test_missing_token_or_instance_disables_the_channel(tmp_path, monkeypatch):
    harness = Harness(tmp_path, mastodon={"instance_url": "https://piaille.example"})
    with pytest.raises(ChannelDisabled, match="PUBLISHER_MASTODON_ACCESS_TOKEN"):
        harness.channel("mastodon")
    monkeypatch.setenv("PUBLISHER_MASTODON_ACCESS_TOKEN", "t")
    bare = Harness(tmp_path / "b")
    with pytest.raises(ChannelDisabled, match=r"\[mastodon\].instance_url"):
        bare.channel("mastodon")


def test_idempotency_key_is_stable_and_per_post():
    a = PostKey("endurance/2026-W47", "mastodon", "post:0", SLOT)
    assert idempotency_key(a) == idempotency_key(PostKey("endurance/2026-W47", "mastodon", "post:0", SLOT + timedelta(days=1)))
    assert idempotency_key(a) != idempotency_key(PostKey("endurance/2026-W48", "mastodon", "post:0", SLOT))
