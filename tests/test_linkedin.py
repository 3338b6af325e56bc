"""LinkedIn channel against a local Posts API: the organisation's post with its article, little-text
escaping, versioned headers, duplicates, read-back after a lost reply, throttling, credentials."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from publisher.channels import ChannelDisabled
from publisher.channels.linkedin import little_text
from publisher.models import Post, State
from support.social_servers import Hang, Reply, make_campaign, make_rendered

pytest_plugins = ["support.social_servers"]  # fixtures creds, li, make_harness

POSTS = "/rest/posts"
CARD = {"uri": "https://www.endurance-info.com/wec/bahrein?utm_source=linkedin", "title": "Toyota sacrée",
        "description": "Le constructeur japonais a dominé la dernière manche.", "thumb": ""}
TEXT = "Endurance Hebdo (semaine 47) : Toyota sacrée à Bahreïn [vidéo] — n°7 & n°8 #WEC #LeMans24"


@pytest.fixture
def h(make_harness, li, creds):
    return make_harness(linkedin={"api_url": li.url, "organization": "5550001", "timeout": 0.5})


def rendered():
    post = Post(network="linkedin", position=0, text=TEXT, length=len(TEXT), limit=3000, card=CARD)
    return make_rendered({"linkedin": (post,)})


def test_an_organisation_post_with_its_article_in_little_text(h, li):
    report = h.send("linkedin", rendered(), make_campaign(mode="lead"))
    assert (report.sent, report.failed) == (1, 0)
    (req,) = li.to("POST", POSTS)
    body = req.json
    assert body["author"] == "urn:li:organization:5550001"
    assert body["commentary"] == ("Endurance Hebdo \\(semaine 47\\) : Toyota sacrée à Bahreïn \\[vidéo\\] — n°7 & n°8"
                                  " {hashtag|\\#|WEC} {hashtag|\\#|LeMans24}")
    assert body["content"] == {"article": {"source": CARD["uri"], "title": CARD["title"], "description": CARD["description"]}}
    assert body["visibility"] == "PUBLIC" and body["lifecycleState"] == "PUBLISHED"
    assert body["distribution"]["feedDistribution"] == "MAIN_FEED"
    assert req.headers["authorization"] == "Bearer li-token-9"
    assert req.headers["linkedin-version"] == "202603" and req.headers["x-restli-protocol-version"] == "2.0.0"
    assert h.rows("linkedin")["post:0"].remote_id == "urn:li:share:7000000"


def test_little_text_escapes_every_reserved_character():
    assert little_text("a|b{c}d@e[f]g(h)i<j>k*l_m~n\\o #tag") == \
        "a\\|b\\{c\\}d\\@e\\[f\\]g\\(h\\)i\\<j\\>k\\*l\\_m\\~n\\\\o {hashtag|\\#|tag}"


def test_a_lost_reply_is_found_among_the_page_posts(h, li):
    li.script("POST", POSTS, Hang(commit=True))
    assert h.send("linkedin", rendered(), make_campaign(mode="lead")).unknown == 1
    again = h.send("linkedin", rendered(), make_campaign(mode="lead"))
    assert (again.sent, again.found) == (0, 1) and len(li.posts) == 1
    (read,) = li.to("GET", POSTS)
    assert read.query == {"q": ["author"], "author": ["urn:li:organization:5550001"], "count": ["20"]}
    assert h.rows("linkedin")["post:0"].state is State.SENT


def test_a_duplicate_422_is_read_as_already_posted(h, li):
    h.send("linkedin", rendered(), make_campaign(mode="lead"))
    other = make_rendered({"linkedin": rendered().posts["linkedin"]}, edition_id="2026-W48")
    report = h.send("linkedin", other, make_campaign(mode="lead"))
    assert (report.sent, report.found) == (0, 1) and len(li.posts) == 1


def test_a_429_waits_until_midnight_utc_when_linkedin_says_nothing_more(h, li):
    li.script("POST", POSTS, Reply(429, {"status": 429, "message": "Resource level throttle limit"}))
    report = h.send("linkedin", rendered(), make_campaign(mode="lead"))
    assert report.pending == 1 and li.posts == []
    assert h.ledger.not_before("endurance/2026-W47", "linkedin", "post:0") == datetime(2026, 11, 24, tzinfo=timezone.utc)


def test_an_expired_token_fails_with_the_variable_to_check(h, li):
    li.script("POST", POSTS, Reply(401, {"status": 401, "message": "The token used in the request has expired"}))
    report = h.send("linkedin", rendered(), make_campaign(mode="lead"))
    assert report.failed == 1 and "PUBLISHER_LINKEDIN_ACCESS_TOKEN" in report.messages[-1]
    assert "li-token-9" not in " ".join(report.messages)


def test_without_the_token_or_the_organisation_the_channel_is_disabled(make_harness, li, monkeypatch):
    monkeypatch.delenv("PUBLISHER_LINKEDIN_ACCESS_TOKEN", raising=False)
    with pytest.raises(ChannelDisabled, match="PUBLISHER_LINKEDIN_ACCESS_TOKEN"):
        make_harness(linkedin={"api_url": li.url, "organization": "1"}).channel("linkedin")
    monkeypatch.setenv("PUBLISHER_LINKEDIN_ACCESS_TOKEN", "x")
    with pytest.raises(ChannelDisabled, match=r"\[linkedin\].organization"):
        make_harness(linkedin={"api_url": li.url}).channel("linkedin")


def test_a_version_linkedin_no_longer_serves_leaves_the_post_planned_with_the_setting_to_change(h, li):
    li.script("POST", POSTS, *[Reply(426, {"status": 426, "message": "Requested version 20260300 is not active"})] * 3)
    report = h.send("linkedin", rendered(), make_campaign(mode="lead"))
    assert report.pending == 1 and report.failed == 0 and li.posts == []
    assert "set [linkedin].api_version to a current version" in " ".join(report.messages)
    row = h.rows("linkedin")["post:0"]
    assert row.state.value == "planned" and "426" in row.reply
