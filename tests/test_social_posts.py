"""Posts for the networks added by their channel modules alone: what each module's PostRules make of
an edition (carousel, lead post only, hashtag cap, limits), and Bluesky's shortened links."""

from __future__ import annotations

import pytest

from publisher.channels import registry
from publisher.channels.bluesky import short_link
from publisher.config import SocialSettings
from publisher.render.posts import compose, limit_for
from support.render_samples import article, campaign, edition, settings

NEW = ("facebook", "instagram", "threads", "linkedin", "telegram")


def _compose(tmp_path, articles, network, **overrides):
    s = settings(tmp_path)
    c = campaign(**overrides)
    return compose(edition(c, articles, s), c, network, s)


@pytest.mark.parametrize("network,thread_posts", [("facebook", 1), ("instagram", 1), ("threads", 4),
                                                  ("linkedin", 1), ("telegram", 4)])
def test_a_thread_is_a_reply_chain_a_carousel_or_the_lead_post_as_the_module_declares(tmp_path, network, thread_posts):
    articles = [article(i) for i in range(6)]
    posts = _compose(tmp_path, articles, network, social=SocialSettings(mode="thread", thread_top=3))
    assert len(posts) == thread_posts
    rules = registry.post_rules(network)
    for p in posts:
        assert p.length == rules.length(p.text) <= p.limit == limit_for(network)
    per_article = _compose(tmp_path, articles, network, social=SocialSettings(mode="per_article"))
    assert len(per_article) == 6  # one post per article everywhere


def test_instagram_folds_the_thread_into_one_carousel_caption_without_a_link(tmp_path):
    articles = [article(i) for i in range(6)]
    (lead,) = _compose(tmp_path, articles, "instagram", social=SocialSettings(mode="thread", thread_top=3))
    newest_first = [article(i).image for i in (5, 4, 3, 2)]
    assert lead.images == tuple(newest_first) and lead.image == newest_first[0]
    assert "https://" not in lead.text and lead.links == ()
    assert lead.limit == 2200
    single = _compose(tmp_path, articles, "instagram", social=SocialSettings(mode="lead"))
    assert single[0].images == () and single[0].image == newest_first[0]


def test_instagram_keeps_at_most_30_hashtags(tmp_path):
    tags = tuple(f"#Tag{i}" for i in range(40))
    (post,) = _compose(tmp_path, [article(1)], "instagram", social=SocialSettings(mode="lead"), hashtags=tags)
    written = [w for w in post.text.split() if w.startswith("#")]
    # the series' tag first, then the campaign's, cut from the end
    assert len(written) == 30 and written[0] == "#WEC" and written[-1] == "#Tag28"


def test_page_networks_carry_the_link_as_a_card_not_in_the_text(tmp_path):
    a = article(1)
    for network in ("facebook", "linkedin"):
        (post,) = _compose(tmp_path, [a], network, social=SocialSettings(mode="lead"))
        assert post.card["uri"].startswith(a.link) and "https://" not in post.text


def test_threads_and_telegram_keep_the_link_in_the_text(tmp_path):
    a = article(1)
    for network in ("threads", "telegram"):
        (post,) = _compose(tmp_path, [a], network, social=SocialSettings(mode="lead"))
        assert post.links == (f"{a.link}?utm_source={network}&utm_medium=social&utm_campaign=endurance-2026-W47",)
        assert post.links[0] in post.text


def test_short_link_follows_the_bluesky_app():
    assert short_link("https://www.endurance-info.com/") == "www.endurance-info.com"
    assert short_link("https://example.org/wec") == "example.org/wec"
    assert short_link("https://www.endurance-info.com/2026/11/wec-article-1/?utm_source=bluesky") == \
        "www.endurance-info.com/2026/11/wec-..."  # a path over 15 characters: its first 13 and "..."


def test_a_bluesky_template_that_keeps_the_link_never_splits_the_lead_post(tmp_path):
    # the user's override writes the link in the text: Bluesky shows it shortened ("host/path..."), so
    # it costs ~40 graphemes instead of its full length, and the lead keeps its summary and hashtags
    (tmp_path / "templates" / "posts").mkdir(parents=True)
    (tmp_path / "templates" / "posts" / "bluesky.txt").write_text('{% extends "default:posts/post.txt" %}\n',
                                                                  encoding="utf-8")
    long_link = "https://www.endurance-info.com/2026/11/" + "wec-toyota-gazoo-racing-sacree-championne-du-monde-" * 2
    a = article(1, link=long_link, summary="Toyota décroche le titre mondial à Bahreïn après une course maîtrisée.")
    posts = _compose(tmp_path, [a], "bluesky", social=SocialSettings(mode="lead"))
    assert len(posts) == 1
    (lead,) = posts
    full = f"{long_link}?utm_source=bluesky&utm_medium=social&utm_campaign=endurance-2026-W47"
    assert lead.links == (full,) and full not in lead.text and short_link(full) in lead.text
    assert "Toyota décroche le titre mondial" in lead.text
    assert "#WEC" in lead.text and "#Endurance" in lead.text
    assert lead.length <= 300
