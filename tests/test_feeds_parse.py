"""publisher.ingest.feeds.parse on the bundled samples and on every broken/hostile feed in samples/feeds/broken/."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from publisher.ingest.entries import normalise_all
from publisher.ingest.feeds import parse

FEEDS = Path(__file__).resolve().parent.parent / "samples" / "feeds"
BROKEN = FEEDS / "broken"
NOW = datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc)
PARIS = ZoneInfo("Europe/Paris")


def read(name: str, **kw):
    path = FEEDS / name
    return parse(path.read_bytes(), source=str(path), now=NOW, **kw)


def assert_clean(article) -> None:
    """What every Article must look like, whatever the feed did."""
    assert article.link.startswith(("https://", "http://"))
    assert "#" not in article.link and "utm_" not in article.link
    for text in (article.title, article.summary, article.author or ""):
        assert not any(c in text for c in "\r\n\x00\u2028"), text
        assert "<" not in text or "<" in text.replace("<script", ""), text
    for text in (article.title, article.summary, article.summary_html):
        low = text.lower()
        assert "<script" not in low and "javascript:" not in low and "onerror" not in low and "onclick" not in low
    assert article.published.tzinfo is not None and article.published.utcoffset().total_seconds() == 0
    assert article.published <= NOW
    assert article.image is None or article.image.startswith(("https://", "http://"))


def test_endurance_sample_is_clean_and_covers_every_series_in_both_weeks():
    r = read("endurance-info-2026-w46-w47.xml")
    assert (r.error, r.rejected, r.warnings) == (None, [], [])
    assert len(r.articles) == 37
    per_week = Counter()
    for a in r.articles:
        assert_clean(a)
        assert a.author and a.categories
        assert "Lire la suite" not in a.summary and "[…]" not in a.summary and "appeared first" not in a.summary_html
        week = a.published.astimezone(PARIS).isocalendar()[1]
        for c in a.categories:
            per_week[(c, week)] += 1
    for series in ("WEC", "ELMS", "Asian Le Mans Series", "24 Heures du Mans"):
        assert per_week[(series, 46)] >= 3 and per_week[(series, 47)] >= 3, series
    for series in ("IMSA", "GT"):
        assert per_week[(series, 46)] >= 2 and per_week[(series, 47)] >= 2, series
    assert sum(1 for a in r.articles if a.image) >= 25
    assert len({a.id for a in r.articles}) == 37


def test_endurance_sample_article_fields():
    r = read("endurance-info-2026-w46-w47.xml")
    by_title = {a.title: a for a in r.articles}
    a = by_title["FFSA GT : « Tellement facile de commettre une petite erreur »"]
    assert a.id == "https://www.endurance-info.com/?p=241252"
    # the feed's link carried utm_* parameters: gone
    assert a.link == "https://www.endurance-info.com/version-francaise/gt/ffsa-gt-tellement-facile-de-commettre-une-petite-erreur-241252.html"
    assert a.published == datetime(2026, 11, 21, 16, 25, tzinfo=timezone.utc)
    assert a.author == "Julie Fontaine" and a.categories == ("GT",)
    assert a.summary.endswith("sous haute tension…")
    assert a.summary_html.startswith("<p>Sacré champion") and "Lire la suite" not in a.summary_html
    # the <img srcset> in content:encoded: its widest candidate up to 1200 px, not the 218x150 thumbnail
    assert a.image.endswith("-1024x683.jpg") and "/wp-content/uploads/" in a.image
    alpine = by_title["WEC : Alpine dévoile ses pilotes Hypercar pour 2027"]
    assert alpine.published == datetime(2026, 11, 15, 23, 30, tzinfo=timezone.utc)  # Monday 00:30 in Paris
    assert alpine.image.endswith("-1024x683.jpg")  # media:content


def test_rallycross_sample():
    r = read("rallycross-france-2026-w46-w47.xml")
    assert (r.error, r.rejected, r.warnings) == (None, [], [])
    assert len(r.articles) == 9
    for a in r.articles:
        assert_clean(a)
        assert a.title.startswith("Rallycross France") or a.title.startswith("Championnat de France de Rallycross")
        assert a.link.startswith("https://www.rallycross-france.info/")
        assert "est apparu en premier" not in a.summary_html
    weeks = Counter(a.published.astimezone(PARIS).isocalendar()[1] for a in r.articles)
    assert weeks[46] >= 2 and weeks[47] >= 2


def test_invalid_xml_keeps_the_entries_and_warns_with_the_reason():
    r = read("broken/invalid-xml.xml")
    assert r.error is None
    assert [a.title for a in r.articles] == ["WEC : Toyota & Ferrari en tête", "ELMS : le plateau 2027", "IMSA : Daytona approche"]
    assert len(r.warnings) == 1 and r.warnings[0].startswith("malformed feed") and "not well-formed" in r.warnings[0]


@pytest.mark.parametrize("name", ["broken/latin1-no-declaration.xml", "broken/latin1-wrong-declaration.xml"])
def test_latin1_feed_keeps_its_accents_without_a_charset_header(name):
    r = read(name)
    titles = [a.title for a in r.articles]
    assert titles == ["Rallycross France : Lessay, l'étape d'ouverture à guichets fermés",
                      "Rallycross France : « Une saison très réussie » selon le président de l'AFOR"]
    assert r.articles[0].summary == "Les billets pour l'étape normande se sont arrachés en quelques heures : c'est déjà complet."
    assert any("parsed as" in w for w in r.warnings)  # the encoding guess is said, not hidden


@pytest.mark.parametrize("name", ["broken/latin1-no-declaration.xml", "broken/latin1-wrong-declaration.xml"])
def test_latin1_feed_with_the_http_charset(name):
    r = read(name, headers={"Content-Type": "text/xml; charset=ISO-8859-1"})
    assert r.articles[1].title == "Rallycross France : « Une saison très réussie » selon le président de l'AFOR"
    assert "é" in r.articles[1].summary and "Ã" not in r.articles[1].summary


def test_hostile_markup_never_survives():
    r = read("broken/hostile.xml")
    assert r.error is None and len(r.articles) == 3
    for a in r.articles:
        assert_clean(a)
        for text in (a.title, a.summary, a.summary_html):
            assert "alert" not in text and "evil.example" not in text and "document.cookie" not in text
            assert "display:none" not in text and "data:text" not in text
    trap, crlf, entities = r.articles
    assert trap.title == "WEC : Le titre piégé"
    assert trap.summary_html == ('<p>Résumé avec une image piégée, un lien javascript, un autre, un troisième et '
                                 '<a href="https://www.endurance-info.com/version-francaise/wec/vrai-lien-11.html">un vrai lien</a>.</p>')
    assert crlf.title == "ELMS : un titre sur deux lignes avec CR/LF"
    assert entities.title == "GT : un titre en gras & des ’entités’ doublées"
    assert entities.summary == "un lien data: et du texte échappé deux fois"


def test_missing_and_future_dates_get_the_fetch_time_with_warnings():
    r = read("broken/missing-dates.xml")
    dates = {a.title: a.published for a in r.articles}
    assert dates["Le Mans : une entrée sans date"] == NOW
    assert dates["Le Mans : une autre entrée sans date"] == NOW
    assert dates["Le Mans : une date illisible"] == NOW
    assert dates["Le Mans : une entrée venue du futur"] == NOW
    assert dates["Le Mans : une entrée datée normalement"] == datetime(2026, 11, 19, 9, 0, tzinfo=timezone.utc)
    assert any("future" in w and "2100" in w for w in r.warnings)
    assert any(w.startswith("3 entries have no readable date") for w in r.warnings)


def test_duplicate_guids_and_links_keep_the_first_entry():
    r = read("broken/duplicate-guids.xml")
    assert [a.title for a in r.articles] == ["GT : la version la plus récente", "GT : un article distinct"]
    assert sum("duplicate" in w for w in r.warnings) == 2


def test_relative_links_are_made_absolute():
    r = read("broken/relative-links.xml")
    assert [a.link for a in r.articles] == [
        "https://www.endurance-info.com/version-francaise/imsa/relatif-40.html",
        "https://www.endurance-info.com/version-francaise/imsa/relatif-42.html",
        "https://www.endurance-info.com/version-francaise/imsa/relatif-43.html",
    ]
    first = r.articles[0]
    assert first.id == first.link  # no guid: the canonical link is the id
    assert first.image == "https://www.endurance-info.com/wp-content/uploads/2026/11/relatif-40.jpg"
    assert 'href="https://www.endurance-info.com/version-francaise/imsa/autre-41.html"' in first.summary_html


def test_unusable_entries_are_rejected_with_reasons():
    r = read("broken/rejects.xml")
    assert [a.title for a in r.articles] == ["WEC : la seule bonne entrée"]
    assert r.rejected == ["entry 1: link is not http(s) (javascript:)", "entry 2: no link and no guid",
                          "entry 3: empty title", "entry 4: link is not http(s) (mailto:)"]


def test_atom_feed():
    r = read("broken/atom.xml")
    assert r.error is None and r.warnings == []
    first, second = r.articles
    assert first.title == "Rallycross France : la Twingo Cup reconduite"
    assert first.link == "https://www.rallycross-france.info/twingo-cup-reconduite/"
    assert first.id == "tag:rallycross-france.info,2026:post-60"
    assert first.published == datetime(2026, 11, 20, 10, 15, tzinfo=timezone.utc)
    assert first.summary == "La formule de promotion reconduit son format…"
    assert first.image == "https://www.rallycross-france.info/wp-content/uploads/2026/11/twingo.jpg"
    assert first.author == "Claire Duval" and first.categories == ("Rallycross France",)
    assert second.summary == "Une tribune couverte de 2 000 places."
    assert second.published == datetime(2026, 11, 21, 18, 40, tzinfo=timezone.utc)  # <updated> when no <published>


@pytest.mark.parametrize("data", [
    (BROKEN / "not-a-feed.html").read_bytes(), (BROKEN / "empty.xml").read_bytes(), b"", b"\x00\xff\xfe garbage",
    b"<rss><channel><item>", "<?xml version='1.0'?><rss/>".encode(),
])
def test_documents_without_entries_are_an_error_not_an_exception(data):
    r = parse(data, source="x", now=NOW)
    assert r.articles == [] and r.error and r.error.startswith("no ")


def test_content_only_item_gets_a_short_summary_and_its_first_image():
    body = "<p>" + " ".join(["mot"] * 400) + "</p>"
    data = f"""<?xml version="1.0" encoding="utf-8"?><rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">
    <channel><title>t</title><link>https://e.com/</link><item><title>Titre</title><link>https://e.com/a</link>
    <content:encoded><![CDATA[<img src="https://stats.example/pixel.gif" width="1" height="1"><p><img src="/img/a.jpg"></p>{body}]]></content:encoded>
    </item></channel></rss>""".encode()
    (a,) = parse(data, source="x", now=NOW).articles
    assert len(a.summary) <= 601 and a.summary.endswith("mot…")
    assert a.summary_html == f"<p>{a.summary}</p>"
    assert a.image == "https://e.com/img/a.jpg"  # the tracking pixel is skipped


def _rss(description: str) -> bytes:
    from html import escape

    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
            f'<link>https://www.endurance-info.com/</link><item><title>Toyota en tête</title>'
            f'<link>https://www.endurance-info.com/a</link><guid>a</guid><pubDate>Wed, 18 Nov 2026 10:00:00 +0100</pubDate>'
            f'<description>{escape(description)}</description></item></channel></rss>').encode()


def test_huge_and_hostile_descriptions_are_cut_before_parsing():
    # '<a href="' repeated makes html.parser quadratic; only the start of a field is parsed
    hostile = parse(_rss('<a href="' * 20_000), source="hostile.xml", now=NOW)
    assert [a.title for a in hostile.articles] == ["Toyota en tête"]
    html = hostile.articles[0].summary_html
    assert "<a" not in html and len(html) < 50_000  # the cut start, escaped as text
    legit = parse(_rss("<p>" + "Le prototype tourne à Sebring. " * 5_000 + "</p>"), source="long.xml", now=NOW)
    a = legit.articles[0]
    assert a.summary.startswith("Le prototype tourne à Sebring.")
    assert len(a.summary_html) <= 33_000  # the excerpt is kept, not a 150 KB article


def test_an_entry_that_breaks_a_rule_costs_only_itself_whatever_the_stage():
    # Entries go through the rules stage by stage; an exception in any stage stops its entry alone.
    def entry(n: int, **kw) -> dict:
        return {"link": f"https://www.endurance-info.com/a-{n}.html", "id": f"https://www.endurance-info.com/?p={n}",
                "title": f"WEC : article {n}", "summary": f"<p>Résumé {n} […]</p>", "author": "Julie Fontaine",
                "published_parsed": datetime(2026, 11, 16, 9, n, tzinfo=timezone.utc).timetuple(), **kw}

    entries = [entry(1), entry(2, title=7), entry(3, summary=["<p>not text</p>"]), entry(4, tags=[3]),
               entry(5, media_content=[None]), entry(6, link="javascript:x"), entry(7, title=""), entry(8)]
    outcomes = normalise_all(entries, source="s", base=None, now=NOW)
    assert [type(o).__name__ for o in outcomes] == ["tuple", "TypeError", "AttributeError", "TypeError", "AttributeError",
                                                    "tuple", "tuple", "tuple"]
    assert outcomes[5] == (None, "link is not http(s) (javascript:)") and outcomes[6] == (None, "empty title")
    for good, n in ((outcomes[0], 1), (outcomes[7], 8)):
        article, note = good
        assert (article.title, article.summary, article.summary_html, note) == (f"WEC : article {n}", f"Résumé {n}…",
                                                                                f"<p>Résumé {n}…</p>", None)
        assert normalise_all([entries[n - 1]], source="s", base=None, now=NOW) == [good]  # alone or not, the same


def test_a_small_wordpress_size_is_kept_as_the_thumbnail_when_the_feed_offers_one():
    by_title = {a.title: a for a in read("endurance-info-2026-w46-w47.xml").articles}
    srcset = by_title["FFSA GT : « Tellement facile de commettre une petite erreur »"]
    assert srcset.thumbnail.endswith("-218x150.jpg") and srcset.image.endswith("-1024x683.jpg")  # srcset 218w
    media = by_title["WEC : Alpine dévoile ses pilotes Hypercar pour 2027"]
    assert media.thumbnail.endswith("-218x150.jpg") and media.image.endswith("-1024x683.jpg")  # media:thumbnail
    enclosure_only = [a for a in by_title.values() if a.image and a.thumbnail is None]
    assert enclosure_only and all(a.image.endswith("-1024x683.jpg") for a in enclosure_only)  # none offered
    assert all(a.thumbnail is None for a in by_title.values() if a.image is None)
