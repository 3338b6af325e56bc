"""The fast paths of sanitize/excerpts give exactly what the plain ones give (html.parser, a full regex search).

html_to_text tokenises simple HTML with one regex and hands anything else to html.parser (sanitize_html is
nh3 on both paths, so its output must not change either);
the boilerplate patterns are tried only where their first words occur. Both are speed-ups only: each test
runs the same inputs with the fast path switched off and wants identical output.
"""

from __future__ import annotations

import random

import pytest

from publisher.ingest import excerpts, sanitize
from publisher.ingest.entries import _ATTR, _ATTR_STARTS, _PIXEL, _PIXEL_STARTS

BASE = "https://www.endurance-info.com/version-francaise/wec/"
TAGS = ["p", "P", "br", "a", "A", "strong", "em", "b", "i", "ul", "li", "blockquote", "div", "span", "h2", "img",
        "script", "style", "iframe", "svg", "title", "textarea", "noscript", "hr", "table", "td", "o:p", "x-y"]
ATTRS = ['href="https://e.com/a?utm_source=x&amp;b=1"', "href='/rel/path'", "href=/unquoted", 'href="javascript:alert(1)"',
         'href="java&#x09;script:x"', 'HREF="HTTP://E.COM/Été"', 'href=""', "href", 'onclick="x()"', 'class="more-link"',
         'title="a>b"', 'a=b=c', 'href = "https://e.com/sp"', 'data-x=\'"\'', 'src="https://cdn.e.com/i.jpg"']
TEXTS = ["Texte", " ", "  ", "\n", "\t", "&amp;", "&lt;script&gt;", "&hellip;", "&nbsp;", "\u00a0", "&eacute", "&amp;#8217;",
         "&", "a < b", "<", ">", "Lire la suite", "LIRE LA SUITE", "Lİre la suite", "lıre plus", "Read more", "Read moread more",
         "continuen savoir plus", "[…]", "[&hellip;]", "[...]", "( … )", "…", "...", ".", "»", "→", "&raquo;", "The post ",
         " appeared first on ", "Site", "L’article ", " est apparu en premier sur ", "Fin.", "« guillemets »", "\x00",
         "\u2028", "\ufeff", "K", "ſ", "<!-- c -->", "<!DOCTYPE html>", "<?php x ?>", "</ p>", "<br/>", "<p/>", "<a/>"]


def _fragment(rnd: random.Random, depth: int = 0) -> str:
    out = []
    for _ in range(rnd.randint(0, 5)):
        r = rnd.random()
        if r < 0.45 or depth > 2:
            out.append(rnd.choice(TEXTS))
        elif r < 0.85:
            tag = rnd.choice(TAGS)
            attrs = "".join(" " + rnd.choice(ATTRS) for _ in range(rnd.choice((0, 0, 1, 2))))
            closer = f"</{tag}>" if rnd.random() < 0.8 else ""
            out.append(f"<{tag}{attrs}/>" if rnd.random() < 0.1 else f"<{tag}{attrs}>{_fragment(rnd, depth + 1)}{closer}")
        else:
            out.append(f"</{rnd.choice(TAGS)}>")
    return "".join(out)


CORPUS = [_fragment(random.Random(seed)) for seed in range(1500)] + [
    '<p>Alors que personne depuis <a href="https://e.com/a" class="more-link">Lire la suite</a></p>',
    "<p>Texte Lire la suite […]</p>", '<p>Fin. <a href="x">Lire la suite</a> […] </p>', "<p>a (…) Lire plus […]</p>",
    "Texte [...] Read more →", "<p>Fin!  …</p>\n", "<p>Coupé […]</p>", "Une citation […] au milieu reste.",
]


def _slow_path(monkeypatch) -> None:
    monkeypatch.setattr(sanitize, "_feed_simple", lambda parser, html: False)  # html.parser for everything
    monkeypatch.setattr(excerpts, "_places", lambda text, starts, offset=0: None)  # the plain regex search


def _outputs(html: str) -> tuple:
    clean = sanitize.sanitize_html(html, BASE)
    return (clean, sanitize.html_to_text(html), excerpts.clean_excerpt(html), excerpts.clean_excerpt_html(clean),
            excerpts.clean_excerpt_html(html), excerpts.clean_excerpt(sanitize.sanitized_to_text(clean)))


def test_fast_paths_give_what_html_parser_and_full_searches_give(monkeypatch):
    fast = []
    for html in CORPUS:
        try:
            fast.append(_outputs(html))
        except AssertionError:  # html.parser itself gives up on some "<!" junk; the same on both paths
            fast.append("html.parser error")
    real_feed_simple = sanitize._feed_simple
    taken = sum(real_feed_simple(sanitize._Text(), h) for h in CORPUS)  # html_to_text's handler (sanitize_html is nh3)
    assert taken > 300 and len(CORPUS) - taken > 300  # the corpus exercises both paths
    _slow_path(monkeypatch)
    for html, expected in zip(CORPUS, fast):
        try:
            got = _outputs(html)
        except AssertionError:
            got = "html.parser error"
        assert got == expected, html


@pytest.mark.parametrize("pattern, starts", [(_ATTR, _ATTR_STARTS), (_PIXEL, _PIXEL_STARTS)])
def test_word_anchored_matches_are_finditer(pattern, starts):
    bits = ['src="a.jpg"', "SRC='b.png'", "src=c.gif", 'srcset="x.jpg 300w, y.jpg 1000w"', 'data-src="l.jpg"',
            'DATA-LAZY-SRC="m.jpg"', 'width="1"', "height=0", "WIDTH='1'", 'width="100"', 'data-width="1"',
            'xsrc="n.jpg"', 'ſrc="s.jpg"', 'wİdth="1"', 'alt="src=q.jpg"', 'class="width=1"', "src", "/"]
    rnd = random.Random(5)
    for _ in range(2000):
        tag = "<img" + "".join(" " + rnd.choice(bits) for _ in range(rnd.randint(0, 6))) + ">"
        want = [m.span() for m in pattern.finditer(tag)]
        assert [m.span() for m in excerpts.matches(pattern, tag, starts)] == want, tag


def test_simple_html_tokeniser_declines_hostile_input_in_linear_time():
    # A backtracking tokeniser would not finish these; this one sees at once that they are not simple HTML
    # (html.parser then takes them, as before).
    for html in ["a" * 200_000 + "<", "<a" + ' x="1"' * 20_000 + " <", "<a" + " x" * 20_000 + " <", "<p>" * 30_000 + "<!"]:
        parser = sanitize._Text()
        assert sanitize._feed_simple(parser, html) is False
        assert parser.out == []  # nothing was sent before it declined
