"""Instagram channel against a local Graph API: image and carousel containers, status polling,
publishing, the publishing quota, read-back after a lost reply, caption rules, credentials."""

from __future__ import annotations

from datetime import timedelta

import pytest

from publisher.channels import ChannelDisabled
from publisher.models import Post, State
from support.social_servers import NOW, Hang, Reply, make_campaign, make_rendered

pytest_plugins = ["support.social_servers"]  # fixtures creds, ig, make_harness

USER = "/v25.0/17841400000000001"
IMG = "https://cdn.example.org/img/{}.jpg"


@pytest.fixture
def h(make_harness, ig, creds):
    return make_harness(instagram={"api_url": ig.url, "user_id": ig.user, "poll_every": "0.01s", "timeout": 0.5})


def post(images: tuple[str, ...] = (), image: str | None = IMG.format("lead"), text: str = "Toyota sacrée à Bahreïn #WEC") -> Post:
    return Post(network="instagram", position=0, text=text, length=len(text), limit=2200, image=image, images=images)


def test_an_image_post_is_a_container_polled_until_finished_then_published(h, ig):
    ig.processing_polls = 2
    report = h.send("instagram", make_rendered({"instagram": (post(),)}), make_campaign(mode="lead"))
    assert (report.sent, report.failed) == (1, 0)
    (create,) = ig.to("POST", f"{USER}/media")
    assert create.form == {"image_url": [IMG.format("lead")], "caption": ["Toyota sacrée à Bahreïn #WEC"]}
    polls = ig.to("GET", "/v25.0/17900000")
    assert len(polls) == 3 and polls[0].query["fields"] == ["status_code,error_message"]
    (publish,) = ig.to("POST", f"{USER}/media_publish")
    assert publish.form == {"creation_id": ["17900000"]}
    assert ig.requests.index(polls[-1]) < ig.requests.index(publish)  # published only once FINISHED
    assert ig.published[0]["caption"] == "Toyota sacrée à Bahreïn #WEC"
    assert h.rows("instagram")["post:0"].remote_id == "18000000"
    assert all(r.headers["authorization"] == "Bearer ig-token-7" for r in ig.requests)


def test_a_thread_of_several_stories_is_one_carousel(h, ig):
    images = tuple(IMG.format(i) for i in range(3))
    report = h.send("instagram", make_rendered({"instagram": (post(images=images, image=images[0]),)}))
    assert report.sent == 1 and len(ig.published) == 1
    items = [r.form for r in ig.to("POST", f"{USER}/media")]
    assert [f["image_url"][0] for f in items[:3]] == list(images)
    assert all(f["is_carousel_item"] == ["true"] for f in items[:3])
    assert items[3]["media_type"] == ["CAROUSEL"] and items[3]["children"] == ["17900000,17900001,17900002"]
    assert ig.published[0]["children"] == list(images)


def test_a_post_without_an_image_fails_with_the_reason(h, ig):
    report = h.send("instagram", make_rendered({"instagram": (post(image=None),)}), make_campaign(mode="lead"))
    assert report.failed == 1 and "only takes posts with an image" in report.messages[-1]
    assert ig.to("POST", f"{USER}/media") == []


def test_a_container_error_fails_the_post_and_publishes_nothing(h, ig):
    ig.script("GET", "/v25.0/17900000", Reply(200, {"id": "17900000", "status_code": "ERROR",
                                                    "error_message": "The image could not be downloaded"}))
    report = h.send("instagram", make_rendered({"instagram": (post(),)}), make_campaign(mode="lead"))
    assert report.failed == 1 and "could not be downloaded" in report.messages[-1]
    assert ig.to("POST", f"{USER}/media_publish") == []


def test_the_publishing_quota_makes_the_post_wait(h, ig):
    ig.quota_total = 0
    report = h.send("instagram", make_rendered({"instagram": (post(),)}), make_campaign(mode="lead"))
    assert report.pending == 1 and ig.to("POST", f"{USER}/media") == []
    assert h.ledger.not_before("endurance/2026-W47", "instagram", "post:0") == NOW + timedelta(hours=1)


def test_the_publishing_limit_error_waits_like_a_rate_limit(h, ig):
    ig.script("POST", f"{USER}/media_publish", Reply(400, {"error": {
        "message": "Application request limit reached", "code": 9, "error_subcode": 2207042}}))
    report = h.send("instagram", make_rendered({"instagram": (post(),)}), make_campaign(mode="lead"))
    assert report.pending == 1 and ig.published == []


def test_a_lost_publish_reply_is_unknown_then_found_by_caption(h, ig):
    ig.script("POST", f"{USER}/media_publish", Hang(commit=True))
    rendered = make_rendered({"instagram": (post(),)})
    assert h.send("instagram", rendered, make_campaign(mode="lead")).unknown == 1
    again = h.send("instagram", rendered, make_campaign(mode="lead"))
    assert (again.sent, again.found) == (0, 1) and len(ig.published) == 1
    row = h.rows("instagram")["post:0"]
    assert row.state is State.SENT and row.remote_id == "18000000" and "instagram.com/p/" in row.reply


def test_without_the_token_or_the_account_the_channel_is_disabled(make_harness, ig, monkeypatch):
    monkeypatch.delenv("PUBLISHER_INSTAGRAM_ACCESS_TOKEN", raising=False)
    with pytest.raises(ChannelDisabled, match="PUBLISHER_INSTAGRAM_ACCESS_TOKEN"):
        make_harness(instagram={"api_url": ig.url, "user_id": "1"}).channel("instagram")
    monkeypatch.setenv("PUBLISHER_INSTAGRAM_ACCESS_TOKEN", "x")
    with pytest.raises(ChannelDisabled, match=r"\[instagram\].user_id"):
        make_harness(instagram={"api_url": ig.url}).channel("instagram")
