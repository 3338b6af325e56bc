"""Telegram channel against a local Bot API: HTML parse mode escaped, link previews, photos with
captions, reply chains, retry_after, unknown outcomes, the token kept out of every message."""

from __future__ import annotations

from datetime import timedelta

import pytest

from publisher.channels import ChannelDisabled
from publisher.channels.telegram import to_html
from publisher.models import Post, State
from support.social_servers import NOW, Hang, Reply, make_campaign, make_posts, make_rendered

pytest_plugins = ["support.social_servers"]  # fixtures creds, tg, make_harness

BOT = "/bot123456:tg-bot-token-10"
HOSTILE = 'Le <b>titre</b> & « </a><script>alert("1")</script> » https://ex.org/a?x=1&y=2 #WEC'
LINK = "https://ex.org/a?x=1&y=2"


@pytest.fixture
def h(make_harness, tg, creds):
    return make_harness(telegram={"api_url": tg.url, "chat_id": tg.chat, "timeout": 0.5})


def post(i: int = 0, text: str = HOSTILE, image: str | None = None) -> Post:
    return Post(network="telegram", position=i, text=text, length=len(text), limit=1024,
                links=(LINK,), image=image)


def test_html_mode_shows_feed_text_as_written_and_links_as_anchors(h, tg):
    report = h.send("telegram", make_rendered({"telegram": (post(),)}), make_campaign(mode="lead"))
    assert report.sent == 1
    (message,) = tg.messages
    assert message["method"] == "sendMessage" and message["raw"]["parse_mode"] == "HTML"
    assert message["visible"] == HOSTILE  # Telegram shows exactly the text, no tag opened
    assert message["links"] == [LINK] and f'<a href="{LINK.replace("&", "&amp;")}">' in message["raw"]["text"]
    assert message["raw"]["link_preview_options"] == {"url": LINK, "prefer_large_media": True}
    assert to_html("a < b & c > d") == "a &lt; b &amp; c &gt; d"
    assert h.rows("telegram")["post:0"].remote_id == "50"


def test_a_thread_is_a_reply_chain_spaced_by_the_channel_rate(h, tg):
    rendered = make_rendered({"telegram": make_posts("telegram", 3)})
    report = h.send("telegram", rendered)
    # 20 messages a minute in a channel: posts are 3 seconds apart; the fixed clock of the harness has
    # the loop wait for real once per post and then go on
    assert report.sent == 3
    assert [m["reply_to"] for m in tg.messages] == [None, 50, 51]


def test_a_post_with_an_image_goes_as_a_photo_with_its_caption(h, tg):
    report = h.send("telegram", make_rendered({"telegram": (post(image="https://cdn.example.org/a.jpg"),)}),
                    make_campaign(mode="lead"))
    assert report.sent == 1
    (message,) = tg.messages
    assert message["method"] == "sendPhoto" and message["raw"]["photo"] == "https://cdn.example.org/a.jpg"
    assert message["visible"] == HOSTILE


def test_a_photo_telegram_cannot_fetch_goes_as_a_message(h, tg):
    tg.bad_photos.add("https://cdn.example.org/gone.jpg")
    report = h.send("telegram", make_rendered({"telegram": (post(image="https://cdn.example.org/gone.jpg"),)}),
                    make_campaign(mode="lead"))
    assert report.sent == 1 and [m["method"] for m in tg.messages] == ["sendMessage"]
    assert "as a message" in h.rows("telegram")["post:0"].reply


def test_retry_after_is_waited_for(h, tg):
    tg.script("POST", f"{BOT}/sendMessage", Reply(429, {"ok": False, "error_code": 429,
                                                        "description": "Too Many Requests: retry after 600",
                                                        "parameters": {"retry_after": 600}}))
    report = h.send("telegram", make_rendered({"telegram": (post(),)}), make_campaign(mode="lead"))
    assert report.pending == 1 and tg.messages == []
    assert h.ledger.not_before("endurance/2026-W47", "telegram", "post:0") == NOW + timedelta(seconds=600)


def test_a_lost_reply_is_unknown_and_only_resent_on_request(h, tg):
    tg.script("POST", f"{BOT}/sendMessage", Hang(commit=True))
    rendered = make_rendered({"telegram": (post(),)})
    assert h.send("telegram", rendered, make_campaign(mode="lead")).unknown == 1
    again = h.send("telegram", rendered, make_campaign(mode="lead"))
    assert again.unknown == 1 and len(tg.to("POST", f"{BOT}/sendMessage")) == 1
    assert "--resend-unknown" in " ".join(again.messages)
    assert h.rows("telegram")["post:0"].state is State.UNKNOWN


def test_a_wrong_token_fails_and_the_token_never_shows(make_harness, tg, monkeypatch):
    monkeypatch.setenv("PUBLISHER_TELEGRAM_BOT_TOKEN", "999:wrong-token-11")
    h = make_harness(telegram={"api_url": tg.url, "chat_id": tg.chat, "timeout": 0.5})
    report = h.send("telegram", make_rendered({"telegram": (post(),)}), make_campaign(mode="lead"))
    assert report.failed == 1 and "PUBLISHER_TELEGRAM_BOT_TOKEN" in report.messages[-1]
    assert "wrong-token-11" not in " ".join(report.messages) + (h.rows("telegram")["post:0"].reply or "")


def test_an_unreachable_api_never_writes_the_token(make_harness, creds):
    h = make_harness(telegram={"api_url": "http://127.0.0.1:9", "chat_id": "@x", "timeout": 0.5})
    h.send("telegram", make_rendered({"telegram": (post(),)}), make_campaign(mode="lead"))
    assert "tg-bot-token-10" not in (h.rows("telegram")["post:0"].reply or "")


def test_without_the_token_or_the_chat_the_channel_is_disabled(make_harness, tg, monkeypatch):
    monkeypatch.delenv("PUBLISHER_TELEGRAM_BOT_TOKEN", raising=False)
    with pytest.raises(ChannelDisabled, match="PUBLISHER_TELEGRAM_BOT_TOKEN"):
        make_harness(telegram={"api_url": tg.url, "chat_id": "@x"}).channel("telegram")
    monkeypatch.setenv("PUBLISHER_TELEGRAM_BOT_TOKEN", "x")
    with pytest.raises(ChannelDisabled, match=r"\[telegram\].chat_id"):
        make_harness(telegram={"api_url": tg.url}).channel("telegram")
