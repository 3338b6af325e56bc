"""Threads channel against a local Threads API: text containers, reply chains, status polling,
publishing quotas, read-back after a lost reply, credentials."""

from __future__ import annotations

import pytest

from publisher.channels import ChannelDisabled
from publisher.models import State
from support.social_servers import Hang, Normal, Reply, make_campaign, make_posts, make_rendered

pytest_plugins = ["support.social_servers"]  # fixtures creds, th, make_harness

ME = "/v1.0/me"


@pytest.fixture
def h(make_harness, th, creds):
    return make_harness(threads={"api_url": th.url, "poll_every": "0.01s", "timeout": 0.5})


def test_a_thread_is_a_reply_chain_of_published_text_containers(h, th):
    rendered = make_rendered({"threads": make_posts("threads", 3)})
    report = h.send("threads", rendered)
    assert (report.sent, report.failed, report.unknown) == (3, 0, 0)
    creates = [r.form for r in th.to("POST", f"{ME}/threads")]
    assert [c["text"][0] for c in creates] == [p.text for p in rendered.posts["threads"]]
    assert all(c["media_type"] == ["TEXT"] for c in creates)
    assert "reply_to_id" not in creates[0]
    assert creates[1]["reply_to_id"] == ["18100000"] and creates[2]["reply_to_id"] == ["18100001"]
    assert [p["reply_to_id"] for p in th.published] == [None, "18100000", "18100001"]
    # each container was read until FINISHED before it was published
    publishes = th.to("POST", f"{ME}/threads_publish")
    for i, publish in enumerate(publishes):
        status = th.to("GET", f"/v1.0/{17_900_000 + i}")
        assert status and th.requests.index(status[-1]) < th.requests.index(publish)
    assert all(r.headers["authorization"] == "Bearer threads-token-8" for r in th.requests)
    assert [h.rows("threads")[f"post:{i}"].remote_id for i in range(3)] == ["18100000", "18100001", "18100002"]


def test_a_lost_publish_reply_is_found_among_the_replies_and_the_chain_goes_on(h, th):
    th.script("POST", f"{ME}/threads_publish", Normal(), Hang(commit=True))  # the reply (post 1) is made, no answer
    rendered = make_rendered({"threads": make_posts("threads", 3)})
    first = h.send("threads", rendered)
    assert (first.sent, first.unknown, first.pending) == (1, 1, 1)
    again = h.send("threads", rendered)
    assert (again.sent, again.found, again.skipped) == (1, 1, 1)
    assert "1 found already posted" in again.line()
    assert len(th.published) == 3  # nothing twice
    assert th.published[2]["reply_to_id"] == th.published[1]["id"]  # the chain hangs on the post found
    assert h.rows("threads")["post:1"].state is State.SENT


def test_the_reply_quota_makes_a_reply_wait(h, th):
    th.script("GET", f"{ME}/threads_publishing_limit", Normal(),
              Reply(200, {"data": [{"quota_usage": 1, "config": {"quota_total": 250},
                                    "reply_quota_usage": 1000, "reply_config": {"quota_total": 1000}}]}))
    report = h.send("threads", make_rendered({"threads": make_posts("threads", 2)}))
    assert (report.sent, report.pending) == (1, 1) and len(th.published) == 1
    assert "1000 of 1000" in h.rows("threads")["post:1"].reply


def test_a_refused_container_fails_without_publishing(h, th):
    th.script("POST", f"{ME}/threads", Reply(400, {"error": {"message": "The text exceeds 500 characters", "code": 100}}))
    report = h.send("threads", make_rendered({"threads": make_posts("threads", 1)}), make_campaign(mode="lead"))
    assert report.failed == 1 and "500 characters" in report.messages[-1]
    assert th.to("POST", f"{ME}/threads_publish") == []


def test_without_the_token_the_channel_is_disabled(make_harness, th, monkeypatch):
    monkeypatch.delenv("PUBLISHER_THREADS_ACCESS_TOKEN", raising=False)
    with pytest.raises(ChannelDisabled, match="PUBLISHER_THREADS_ACCESS_TOKEN"):
        make_harness(threads={"api_url": th.url}).channel("threads")
