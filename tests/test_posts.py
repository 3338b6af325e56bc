"""Social posts: each network's length rule, and composition that never cuts a word, hashtag or link."""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from types import SimpleNamespace

import pytest

from publisher.channels.bluesky import bluesky_length
from publisher.channels.mastodon import mastodon_length
from publisher.channels.x import x_length
from publisher.config import SocialSettings
from publisher.render.posts import compose, limit_for, split_text
from publisher.render.templates import shorten
from support.render_samples import article, campaign, edition, settings

LONG_URL = "https://www.endurance-info.com/2026/11/17/wec-bahrein-toyota-remporte-la-derniere-manche/?utm_source=x&utm_medium=social"


# -- counting ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("text,expected", [
    ("hello", 5),
    ("Le Mans « 24 Heures » : l'été", 29),  # Latin-1 and general punctuation weigh 1
    ("日本語", 6),  # CJK weighs 2
    ("한국어", 6),
    ("😷", 2),
    ("👨‍👩‍👧‍👦", 2),  # a ZWJ sequence counts once, as an emoji
    ("🇫🇷", 2),
    ("1️⃣", 2),
    ("…", 2),  # U+2026 is outside twitter-text's light ranges
    ("https://a.co", 23),
    (LONG_URL, 23),
    (f"Voir {LONG_URL}.", 5 + 23 + 1),  # the final dot is not part of the link
    ("e\u0301", 1),  # NFC first: e + combining acute = é
])
def test_x_weighted_length(text, expected):
    assert x_length(text) == expected


def test_x_counts_bare_domains_as_links_like_twitter_text():
    assert x_length("lu sur endurance-info.com") == len("lu sur ") + 23
    # the official count: a bare domain with a path is one link, 23 whatever its length (we used to
    # count it as its own length when longer; tests/data/x_lengths.tsv has more such cases)
    long_domain = "tres-long-sous-domaine.endurance-info.com/2026/11/article"
    assert x_length(long_domain) == 23


def test_mastodon_length():
    assert mastodon_length(f"Voir {LONG_URL}") == 5 + 23
    assert mastodon_length("merci @aco@piaille.fr !") == len("merci @aco !")
    assert mastodon_length("👨‍👩‍👧‍👦 日本") == 4  # graphemes, no weighting
    assert limit_for("mastodon", settings_with_mastodon(None)) == 500
    assert limit_for("mastodon", settings_with_mastodon(1000)) == 1000


def test_bluesky_length_counts_graphemes_and_links_in_full():
    assert bluesky_length("👨‍👩‍👧‍👦🇫🇷") == 2
    assert bluesky_length(unicodedata.normalize("NFD", "été")) == 3
    assert bluesky_length(LONG_URL) == len(LONG_URL)
    assert limit_for("bluesky") == 300 and limit_for("x") == 280


def settings_with_mastodon(max_characters, root="/tmp"):
    from pathlib import Path

    s = settings(Path(root))
    channels = {} if max_characters is None else {"mastodon": SimpleNamespace(max_characters=max_characters)}
    return dataclasses.replace(s, channels=channels)


def test_shorten_cuts_at_a_word_boundary():
    assert shorten("Une course très disputée jusqu'au bout.", 20) == "Une course très…"
    assert shorten("court", 20) == "court"
    assert shorten("Anticonstitutionnellement", 10) == ""  # never half a word
    assert len(shorten("mot " * 100, 50)) <= 50


# -- composition -------------------------------------------------------------------------------------


def _compose(tmp_path, articles, network, **overrides):
    s = settings(tmp_path)
    c = campaign(**overrides)
    return compose(edition(c, articles, s), c, network, s)


def _source_words(articles, extra=()):
    words = set()
    for a in articles:
        words.update(a.title.split())
        words.update(a.summary.split())
    words.update("Endurance Hebdo – semaine du 16 au 22 novembre 2026 À la une : — Toute l'actualité de l'endurance.".split())
    words.update(extra)
    return words


@pytest.mark.parametrize("network", ["x", "mastodon", "bluesky"])
@pytest.mark.parametrize("mode,expected", [("lead", 1), ("thread", 4), ("per_article", 6), ("none", 0)])
def test_modes_and_limits(tmp_path, network, mode, expected):
    articles = [article(i) for i in range(6)]
    posts = _compose(tmp_path, articles, network, social=SocialSettings(mode=mode, thread_top=3))
    assert len(posts) == expected
    assert [p.position for p in posts] == list(range(expected))
    counter = {"x": x_length, "mastodon": mastodon_length, "bluesky": bluesky_length}[network]
    for p in posts:
        assert p.network == network and p.limit == limit_for(network)
        assert p.length == counter(p.text) <= p.limit
        assert p.language == "fr"


def test_thread_order_follows_the_edition(tmp_path):
    articles = [article(i) for i in range(6)]
    s = settings(tmp_path)
    c = campaign(social=SocialSettings(mode="thread", thread_top=3))
    e = edition(c, articles, s)
    posts = compose(e, c, "x", s)
    assert [p.article_id for p in posts] == [a.id for a in e.articles[:4]]
    assert posts[0].text.startswith("Endurance Hebdo – semaine du 16 au 22 novembre 2026")
    assert posts[0].image == e.articles[0].image
    for p, a in zip(posts, e.articles):
        assert a.title in p.text
        assert p.links == (f"{a.link}?utm_source=x&utm_medium=social&utm_campaign=endurance-2026-W47",)


def test_no_word_hashtag_or_link_is_ever_cut(tmp_path):
    long_summary = " ".join(f"mot{i}" for i in range(300))
    articles = [article(i, summary=long_summary) for i in range(4)]
    for network in ("x", "mastodon", "bluesky"):
        posts = _compose(tmp_path, articles, network, social=SocialSettings(mode="per_article"),
                         hashtags=("#Endurance", "#MotorsportFR"))
        allowed = _source_words(articles, ("#WEC", "#Endurance", "#MotorsportFR"))
        for p in posts:
            assert p.length <= p.limit
            for word in p.text.split():
                if word.startswith("https://"):
                    assert word in {f"{a.link}?utm_source={network}&utm_medium=social&utm_campaign=endurance-2026-W47" for a in articles}
                else:
                    assert word.removesuffix("…") in allowed, (network, word)
            assert "…" in p.text  # the summary was shortened, not dropped: it fits partly
            assert "#WEC" in p.text


def test_hashtags_are_dropped_before_anything_is_split(tmp_path):
    title = " ".join(["Endurance"] * 25) + " Final"  # 255 chars + a link (23): no hashtag fits on X
    posts = _compose(tmp_path, [article(1, title=title, summary="")], "x", social=SocialSettings(mode="per_article"),
                     hashtags=("#Endurance", "#MotorsportFR"))
    assert len(posts) == 1
    assert "#" not in posts[0].text
    assert posts[0].links and posts[0].length <= 280


def test_text_that_cannot_fit_moves_into_the_thread(tmp_path):
    title = " ".join(f"Titre{i}" for i in range(80))  # far over 280 on its own
    a = article(1, title=title, summary="")
    posts = _compose(tmp_path, [a], "x", social=SocialSettings(mode="lead"))
    assert len(posts) > 1
    assert all(p.length <= 280 for p in posts)
    joined = " ".join(p.text for p in posts).split()
    assert [w for w in joined if w.startswith("Titre")] == title.split()  # every word, whole, in order
    link = f"{a.link}?utm_source=x&utm_medium=social&utm_campaign=endurance-2026-W47"
    assert sum(p.text.split().count(link) for p in posts) == 1
    assert posts[0].image == a.image and posts[1].image is None


def test_split_text_keeps_links_whole():
    text = " ".join(["mot"] * 100) + " " + LONG_URL + " " + " ".join(["fin"] * 100)
    chunks = split_text(text, "bluesky", 120)
    assert all(bluesky_length(c) <= 120 for c in chunks)
    assert sum(c.split().count(LONG_URL) for c in chunks) == 1


def test_cjk_and_emoji_weigh_double_on_x(tmp_path):
    summary = "トヨタがバーレーンで優勝した。" * 3 + " 🏁🏆 " + "フェラーリは二位。" * 10
    posts = _compose(tmp_path, [article(1, summary=summary)], "x", social=SocialSettings(mode="per_article"))
    assert posts[0].length <= 280
    assert x_length(posts[0].text) > len(re.sub(r"https?://\S+", "x" * 23, posts[0].text))  # CJK counted double


def test_hashtags_per_series_present_plus_campaign_and_mentions(tmp_path):
    articles = [article(1), article(2, categories=("Le Mans",), title="Le Mans : le plateau 2027 dévoilé")]
    posts = _compose(tmp_path, articles, "mastodon", social=SocialSettings(mode="lead", mentions=("24hoursoflemans", "@ACO")))
    text = posts[0].text
    assert text.splitlines()[-1] == "@24hoursoflemans @ACO #WEC #LeMans24 #Endurance"
    assert "#ELMS" not in text  # no ELMS article this week


def test_bluesky_posts_carry_a_card_instead_of_a_link(tmp_path):
    a = article(2)  # the newer one leads
    posts = _compose(tmp_path, [article(1), a], "bluesky", social=SocialSettings(mode="thread", thread_top=1))
    lead = posts[0]
    assert lead.card == {"uri": f"{a.link}?utm_source=bluesky&utm_medium=social&utm_campaign=endurance-2026-W47",
                         "title": a.title, "description": a.summary, "thumb": a.image}
    assert "https://" not in lead.text and lead.links == ()
    assert posts[1].card["title"] == article(1).title


def test_web_version_link_mode(tmp_path):
    social = SocialSettings(mode="thread", thread_top=2, link="web_version",
                            web_version_url="https://www.endurance-info.com/newsletter/{campaign}/{edition}")
    articles = [article(i) for i in range(3)]
    posts = _compose(tmp_path, articles, "x", social=social)
    assert posts[0].links == ("https://www.endurance-info.com/newsletter/endurance/2026-W47",)
    assert len(posts) == 3  # the thread then starts with the lead article itself


def test_a_network_declared_only_by_its_channel_module_gets_posts(tmp_path, monkeypatch):
    # What "a new channel is one file" needs from rendering: the spec's rules, no template of its own
    # (posts/post.txt serves), and no name of it anywhere in render/.
    from publisher.channels import ChannelSpec, PostRules, registry
    from publisher.render.email import Renderer

    spec = ChannelSpec(name="fedi", kind="social", network="fedi", settings_cls=SimpleNamespace,
                       factory=lambda *args: None, posts=PostRules(length=len, limit=120, card=True))
    registry.names()  # load the built-in channels first, then add this one beside them
    monkeypatch.setitem(registry._specs, "fedi", spec)
    articles = [article(i, summary="Une course très disputée jusqu'au bout de la nuit " * 3) for i in range(1, 4)]
    posts = _compose(tmp_path, articles, "fedi", social=SocialSettings(mode="per_article"))
    assert [p.network for p in posts] == ["fedi"] * len(posts) and len(posts) >= 3
    assert all(p.length == len(p.text) <= 120 == p.limit for p in posts)
    assert posts[0].card is not None  # the spec asked for a link card on the first post
    s = settings(tmp_path)
    c = dataclasses.replace(campaign(), channels=("email", "fedi"))
    rendered = Renderer(dataclasses.replace(s, channels={**s.channels, "fedi": SimpleNamespace()})).render(edition(c, articles, s), c)
    assert list(rendered.posts) == ["fedi"] and rendered.posts["fedi"]
