"""Facebook Page channel against a local Graph API: page feed posts, read-back after a lost reply,
duplicates, throttling, token errors, missing credentials."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from publisher.channels import ChannelDisabled
from publisher.models import State
from support.social_servers import CREDS, NOW, Hang, Reply, make_campaign, make_posts, make_rendered

pytest_plugins = ["support.social_servers"]  # fixtures creds, fb, make_harness

FEED = "/v25.0/1122334455/feed"
CARD = {"uri": "https://www.endurance-info.com/wec/bahrein", "title": "Toyota sacrée", "description": "…", "thumb": ""}


@pytest.fixture
def h(make_harness, fb, creds):
    return make_harness(facebook={"api_url": fb.url, "page_id": fb.page_id, "timeout": 0.5})


def test_a_page_post_with_message_and_link_and_the_token_in_a_header(h, fb):
    posts = make_posts("facebook", 1, card=CARD)
    report = h.send("facebook", make_rendered({"facebook": posts}), make_campaign(mode="lead"))
    assert (report.sent, report.failed) == (1, 0)
    (req,) = fb.to("POST", FEED)
    assert req.form == {"message": [posts[0].text], "link": [CARD["uri"]]}
    assert req.headers["authorization"] == "Bearer fb-page-token-6"
    assert "fb-page-token-6" not in req.path and "access_token" not in req.body.decode()
    row = h.rows("facebook")["post:0"]
    assert row.state is State.SENT and row.remote_id == "1122334455_900"


def test_a_lost_reply_is_unknown_then_found_by_reading_the_page_back(h, fb):
    fb.script("POST", FEED, Hang(commit=True))  # Facebook made the post, the reply never came
    rendered = make_rendered({"facebook": make_posts("facebook", 1, card=CARD)})
    first = h.send("facebook", rendered, make_campaign(mode="lead"))
    assert (first.sent, first.unknown) == (0, 1)
    again = h.send("facebook", rendered, make_campaign(mode="lead"))
    assert (again.sent, again.found, again.unknown) == (0, 1, 0)
    assert "0 sent, 1 found already posted" in again.line()
    assert len(fb.posts) == 1 and len(fb.to("POST", FEED)) == 1  # read back, not posted again
    assert h.rows("facebook")["post:0"].remote_id == "1122334455_900"


def test_a_5xx_with_nothing_made_is_unknown_then_sent_once_the_read_back_finds_nothing(h, fb):
    fb.script("POST", FEED, Reply(500, {"error": {"message": "An unknown error occurred", "code": 1,
                                                  "is_transient": True}}))
    rendered = make_rendered({"facebook": make_posts("facebook", 1, card=CARD)})
    assert h.send("facebook", rendered, make_campaign(mode="lead")).unknown == 1
    again = h.send("facebook", rendered, make_campaign(mode="lead"))
    assert (again.sent, again.found) == (1, 0) and len(fb.posts) == 1
    assert fb.to("GET", FEED)  # the feed was read before the post was tried again


def test_a_failed_read_back_leaves_the_post_unknown_for_the_user(h, fb):
    fb.script("POST", FEED, Hang())
    rendered = make_rendered({"facebook": make_posts("facebook", 1, card=CARD)})
    h.send("facebook", rendered, make_campaign(mode="lead"))
    fb.script("GET", FEED, Reply(500, {"error": {"message": "Service temporarily unavailable", "code": 2}}))
    again = h.send("facebook", rendered, make_campaign(mode="lead"))
    assert again.unknown == 1 and fb.posts == [] and len(fb.to("POST", FEED)) == 1
    assert "--resend-unknown" in " ".join(again.messages)


def test_the_duplicate_code_506_is_read_as_already_posted(h, fb):
    posts = make_posts("facebook", 1, card=CARD)
    fb.posts.append({"id": "1122334455_42", "message": posts[0].text, "link": None, "permalink_url": "https://fb/42"})
    report = h.send("facebook", make_rendered({"facebook": posts}), make_campaign(mode="lead"))
    assert (report.sent, report.found) == (0, 1)
    assert h.rows("facebook")["post:0"].remote_id == "1122334455_42"


def test_a_page_rate_limit_waits_for_the_business_use_case_estimate(h, fb):
    usage = {"1122334455": [{"type": "pages", "call_count": 100, "estimated_time_to_regain_access": 30}]}
    fb.script("POST", FEED, Reply(400, {"error": {"message": "Page request limit reached", "code": 32}},
                                  headers={"X-Business-Use-Case-Usage": json.dumps(usage)}))
    rendered = make_rendered({"facebook": make_posts("facebook", 1, card=CARD)})
    report = h.send("facebook", rendered, make_campaign(mode="lead"))
    assert report.pending == 1 and fb.posts == []
    assert h.ledger.not_before("endurance/2026-W47", "facebook", "post:0") == NOW + timedelta(minutes=30)
    h.now = NOW + timedelta(minutes=31)
    assert h.send("facebook", rendered, make_campaign(mode="lead")).sent == 1


def test_an_expired_token_fails_with_the_variable_to_check(h, fb):
    fb.script("POST", FEED, Reply(400, {"error": {"message": "Error validating access token: Session has expired",
                                                  "code": 190, "error_subcode": 463}}))
    report = h.send("facebook", make_rendered({"facebook": make_posts("facebook", 1)}), make_campaign(mode="lead"))
    assert report.failed == 1 and "PUBLISHER_FACEBOOK_PAGE_TOKEN" in report.messages[-1]


def test_without_the_token_or_the_page_the_channel_is_disabled(make_harness, fb, monkeypatch):
    monkeypatch.delenv("PUBLISHER_FACEBOOK_PAGE_TOKEN", raising=False)
    with pytest.raises(ChannelDisabled, match="PUBLISHER_FACEBOOK_PAGE_TOKEN"):
        make_harness(facebook={"api_url": fb.url, "page_id": "1"}).channel("facebook")
    monkeypatch.setenv("PUBLISHER_FACEBOOK_PAGE_TOKEN", CREDS["PUBLISHER_FACEBOOK_PAGE_TOKEN"])
    with pytest.raises(ChannelDisabled, match=r"\[facebook\].page_id"):
        make_harness(facebook={"api_url": fb.url}).channel("facebook")
