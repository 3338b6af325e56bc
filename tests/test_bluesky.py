"""Bluesky channel against a local PDS: login, record keys, UTF-8 facets, embed card, reply refs, retries."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from publisher.channels import ChannelDisabled
from publisher.channels.bluesky import facets, record_key, record_key_before_thread_order
from publisher.channels.posting import PostKey
from publisher.models import Post, State
from support.social_servers import (
    LINK,
    NOW,
    SLOT,
    BlueskyServer,
    Hang,
    Harness,
    Reply,
    make_campaign,
    make_posts,
    make_rendered,
    post_key,
)

pytest_plugins = ["support.social_servers"]  # fixtures creds, bs, make_harness

CREATE = "/xrpc/com.atproto.repo.createRecord"
TID = re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")


@pytest.fixture
def h(make_harness, bs, creds):
    return make_harness(bluesky={"service_url": bs.url, "timeout": 0.5})


def rkey(i: int) -> str:
    return record_key(post_key("bluesky", i))


def card(bs) -> dict:
    return {"uri": LINK, "title": "Bahreïn : Toyota sacrée", "description": "Le résumé de la finale",
            "thumb": f"{bs.url}/img/thumb.png"}


def test_thread_with_record_keys_facets_card_and_reply_refs(h, bs):
    rendered = make_rendered({"bluesky": make_posts("bluesky", 3, card=card(bs))})
    report = h.send("bluesky", rendered)
    assert report.sent == 3
    login = bs.to("POST", "/xrpc/com.atproto.server.createSession")
    assert login[0].json == {"identifier": "endurance.test", "password": "app-pass-1234"}
    creates = [r.json for r in bs.to("POST", CREATE)]
    assert [c["rkey"] for c in creates] == [rkey(0), rkey(1), rkey(2)]
    assert all(TID.match(c["rkey"]) for c in creates)
    assert {c["repo"] for c in creates} == {BlueskyServer.did}
    assert [c["record"]["text"] for c in creates] == [p.text for p in rendered.posts["bluesky"]]
    assert creates[0]["record"]["langs"] == ["fr"]
    # link facets index UTF-8 bytes: the accents before the link shift them away from character offsets
    first = creates[0]["record"]
    data = first["text"].encode("utf-8")
    link_facet = next(f for f in first["facets"] if f["features"][0]["$type"] == "app.bsky.richtext.facet#link")
    start, end = link_facet["index"]["byteStart"], link_facet["index"]["byteEnd"]
    assert data[start:end].decode("utf-8") == f"{LINK}-0" == link_facet["features"][0]["uri"]
    assert start != first["text"].index(LINK)
    tags = [f["features"][0]["tag"] for f in first["facets"] if f["features"][0]["$type"] == "app.bsky.richtext.facet#tag"]
    assert tags == ["WEC", "LeMans24"]
    # the lead post carries the external card with its uploaded thumbnail
    external = first["embed"]["external"]
    assert (external["uri"], external["title"], external["description"]) == (LINK, "Bahreïn : Toyota sacrée", "Le résumé de la finale")
    assert external["thumb"]["ref"] == {"$link": "bafkreithumb"}
    assert b"\x89PNG" in bs.to("POST", "/xrpc/com.atproto.repo.uploadBlob")[0].body
    assert "embed" not in creates[1]["record"]
    # replies: root is the first post, parent the previous one
    uri = [bs.records[rkey(i)]["uri"] for i in range(3)]
    assert "reply" not in first
    assert creates[1]["record"]["reply"]["root"]["uri"] == uri[0] == creates[1]["record"]["reply"]["parent"]["uri"]
    strong = "com.atproto.repo.strongRef"
    assert creates[2]["record"]["reply"]["root"] == {"uri": uri[0], "cid": "bafyreicid0000", "$type": strong}
    assert creates[2]["record"]["reply"]["parent"] == {"uri": uri[1], "cid": "bafyreicid0001", "$type": strong}
    assert h.rows("bluesky")["post:1"].remote_id == f"{uri[1]} bafyreicid0001"


def test_rerun_posts_nothing_new(h, bs):
    rendered = make_rendered({"bluesky": make_posts("bluesky", 2)})
    h.send("bluesky", rendered)
    again = h.send("bluesky", rendered)
    assert (again.sent, again.skipped) == (0, 2) and len(bs.to("POST", CREATE)) == 2


def test_hang_after_the_record_was_made_resolves_to_sent_on_the_next_run_without_a_second_post(h, bs):
    bs.script("POST", CREATE, Hang(commit=True))
    rendered = make_rendered({"bluesky": make_posts("bluesky", 2)})
    report = h.send("bluesky", rendered)
    assert (report.sent, report.unknown, report.pending) == (0, 1, 1)
    assert len(bs.to("POST", CREATE)) == 1  # not retried in the same run
    later = h.send("bluesky", rendered)
    # the first post is read back under its record key and reported as found, not as sent again
    assert (later.sent, later.found) == (1, 1) and "1 sent, 1 found already posted" in later.line()
    assert len(bs.to("POST", CREATE)) == 2  # no second create for the post already there
    assert len(bs.records) == 2  # the same record key could not make a second post
    assert bs.to("GET", "/xrpc/com.atproto.repo.getRecord")  # the existing record was checked
    row = h.rows("bluesky")["post:0"]
    assert row.state is State.SENT and row.remote_id.startswith(bs.records[rkey(0)]["uri"])
    assert bs.to("POST", CREATE)[-1].json["record"]["reply"]["parent"]["uri"] == bs.records[rkey(0)]["uri"]


def test_an_unknown_post_left_by_a_version_with_the_former_record_keys_is_found_not_posted_again(h, bs):
    """Upgrading with an `unknown` Bluesky row: the post may exist under the key the former version gave it."""
    rendered = make_rendered({"bluesky": make_posts("bluesky", 2)})
    old = record_key_before_thread_order(post_key("bluesky", 0))
    assert old != rkey(0)
    text = rendered.posts["bluesky"][0].text
    bs.records[old] = {"uri": f"at://{bs.did}/app.bsky.feed.post/{old}", "cid": "bafyold",
                       "value": {"$type": "app.bsky.feed.post", "text": text, "createdAt": "2026-11-23T07:30:00.000Z"}}
    key = "endurance/2026-W47"
    h.ledger.plan(key, "bluesky", ["post:0", "post:1"])
    assert h.ledger.claim_one(key, "bluesky", "post:0")
    h.ledger.recover(key, "bluesky")  # what a run killed while post:0 was on the wire leaves
    assert h.rows("bluesky")["post:0"].state is State.UNKNOWN
    report = h.send("bluesky", rendered)
    assert (report.sent, report.found) == (1, 1)
    assert [r.json["rkey"] for r in bs.to("POST", CREATE)] == [rkey(1)]  # post:0 was not created again
    row = h.rows("bluesky")["post:0"]
    assert row.state is State.SENT and row.remote_id.startswith(f"at://{bs.did}/app.bsky.feed.post/{old}")
    # the reply hangs under the post that exists
    assert bs.to("POST", CREATE)[0].json["record"]["reply"]["parent"]["uri"] == f"at://{bs.did}/app.bsky.feed.post/{old}"


def test_500_before_the_record_was_made_is_retried_with_the_same_key(h, bs):
    bs.script("POST", CREATE, Reply(500, {"error": "InternalServerError", "message": "oops"}))
    channel = h.channel("bluesky")
    channel.backoff = (0.01,)
    report = channel.dispatch(make_rendered({"bluesky": make_posts("bluesky", 1)}), make_campaign())
    assert report.sent == 1 and len(bs.records) == 1
    assert [r.json["rkey"] for r in bs.to("POST", CREATE)] == [rkey(0), rkey(0)]


def test_a_record_key_holding_another_text_is_a_failure_not_a_success(h, bs):
    bs.records[rkey(0)] = {"uri": f"at://{bs.did}/app.bsky.feed.post/{rkey(0)}", "cid": "bafyother",
                             "value": {"$type": "app.bsky.feed.post", "text": "autre", "createdAt": "2026-11-20T08:00:00.000Z"}}
    report = h.send("bluesky", make_rendered({"bluesky": make_posts("bluesky", 1)}))
    assert report.failed == 1 and "different post" in h.rows("bluesky")["post:0"].reply


def test_429_waits_for_ratelimit_reset(h, bs):
    reset = str(int(NOW.timestamp()) + 1)
    bs.script("POST", CREATE, Reply(429, {"error": "RateLimitExceeded"}, headers={"ratelimit-reset": reset}))
    report = h.send("bluesky", make_rendered({"bluesky": make_posts("bluesky", 1)}))
    assert report.sent == 1 and len(bs.to("POST", CREATE)) == 2


def test_refused_login_reports_pending_without_the_password(tmp_path, bs, creds, monkeypatch):
    monkeypatch.setenv("PUBLISHER_BLUESKY_APP_PASSWORD", "wrong-pass-9876")
    harness = Harness(tmp_path, bluesky={"service_url": bs.url})
    report = harness.send("bluesky", make_rendered({"bluesky": make_posts("bluesky", 2)}))
    assert (report.sent, report.pending) == (0, 2)
    assert bs.to("POST", CREATE) == []
    text = " ".join(report.messages)
    assert "login refused" in text and "PUBLISHER_BLUESKY_APP_PASSWORD" in text and "wrong-pass-9876" not in text


def test_handle_from_settings_and_missing_password(tmp_path, monkeypatch):
    harness = Harness(tmp_path, bluesky={"handle": "endurance.test"})
    with pytest.raises(ChannelDisabled, match="PUBLISHER_BLUESKY_APP_PASSWORD"):
        harness.channel("bluesky")
    bare = Harness(tmp_path / "b")
    monkeypatch.setenv("PUBLISHER_BLUESKY_APP_PASSWORD", "p")
    with pytest.raises(ChannelDisabled, match=r"\[bluesky\].handle"):
        bare.channel("bluesky")


def test_record_keys_are_valid_distinct_tids_near_the_slot():
    keys = {record_key(PostKey(f"{c}/2026-W47", "bluesky", f"post:{i}", SLOT)) for c in ("endurance", "gt", "imsa") for i in range(5)}
    assert len(keys) == 15 and all(TID.match(k) for k in keys)
    alphabet = "234567abcdefghijklmnopqrstuvwxyz"
    value = 0
    for ch in rkey(0):
        value = value * 32 + alphabet.index(ch)
    micros = value >> 10
    assert SLOT.timestamp() <= micros / 1e6 < (SLOT + timedelta(seconds=1)).timestamp()


def test_facets_for_accents_emoji_and_a_url_inside_parentheses():
    text = "🏁 Créé à Sebring (https://ex.org/é?x=1) #IMSA #2026"
    out = facets(text, ("https://ex.org/é?x=1",))
    data = text.encode("utf-8")
    spans = [data[f.index.byte_start:f.index.byte_end].decode() for f in out]
    assert spans == ["https://ex.org/é?x=1", "#IMSA"]  # a number alone is not a hashtag


def test_record_keys_of_a_thread_increase_in_thread_order():
    # clients sort a repo's records by their TID: a reply must never sort before the post it answers
    for campaign in ("endurance", "gt", "imsa", "rallycross"):
        keys = [record_key(PostKey(f"{campaign}/2026-W47", "bluesky", f"post:{i}", SLOT)) for i in range(12)]
        assert keys == sorted(keys) and len(set(keys)) == 12
    # and a later edition's keys come after an earlier one's
    later = record_key(PostKey("endurance/2026-W48", "bluesky", "post:0", SLOT + timedelta(days=7)))
    assert later > max(record_key(PostKey("endurance/2026-W47", "bluesky", f"post:{i}", SLOT)) for i in range(12))


def test_mentions_become_mention_facets_with_the_did_resolved_by_the_server(h, bs):
    text = "Toyota sacrée à Bahreïn, bravo @fiawec.bsky.social et @LeMans24.bsky.social ! @FIAWEC @inconnu.bsky.social #WEC"
    post = Post(network="bluesky", position=0, text=text, length=len(text), limit=300)
    report = h.send("bluesky", make_rendered({"bluesky": (post,)}), make_campaign(mode="lead"))
    assert report.sent == 1
    resolved = sorted(r.query["handle"][0] for r in bs.to("GET", "/xrpc/com.atproto.identity.resolveHandle"))
    assert resolved == ["fiawec.bsky.social", "inconnu.bsky.social", "lemans24.bsky.social"]  # "@FIAWEC" is no handle
    record = bs.to("POST", CREATE)[0].json["record"]
    data = record["text"].encode("utf-8")
    mentions = [(data[f["index"]["byteStart"]:f["index"]["byteEnd"]].decode(), f["features"][0]["did"])
                for f in record["facets"] if f["features"][0]["$type"] == "app.bsky.richtext.facet#mention"]
    assert mentions == [("@fiawec.bsky.social", "did:plc:fiawec0000000000000000"),
                        ("@LeMans24.bsky.social", "did:plc:lemans240000000000000000")]
    # a handle that does not resolve stays plain text rather than a facet pointing nowhere
    assert "@inconnu.bsky.social" in record["text"]


def test_a_shortened_link_in_the_text_gets_a_facet_to_the_full_url():
    full = "https://www.endurance-info.com/2026/11/wec-toyota-sacree/?utm_source=bluesky"
    text = "Été décisif : www.endurance-info.com/2026/11/wec-... #WEC"
    out = facets(text, (full,))
    data = text.encode("utf-8")
    link = next(f for f in out if f.features[0].py_type == "app.bsky.richtext.facet#link")
    assert data[link.index.byte_start:link.index.byte_end].decode() == "www.endurance-info.com/2026/11/wec-..."
    assert link.features[0].uri == full
