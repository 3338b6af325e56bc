"""Ingestion's shortcuts give exactly what the plain code gives: each is a speed-up only.

The boilerplate patterns are anchored at the end of a text, so most texts' last characters say there
is no match, or where the only possible one starts; these tests compare with a full regex search on
texts built to sit on every edge of that reasoning (every piece, every kind of space, the letters
re.IGNORECASE folds).
"""

from __future__ import annotations

import random

from publisher.ingest import excerpts

PIECES = ["Texte", "fin", "poursuite", "suite", "Lire la suite", "LIRE LA SUITE", "lire la suıte", "Lİre la suite",
          "Lire plus", "lire pluſ", "Read more", "READ MORE", "Continue reading", "Continuer la lecture",
          "En savoir plus", "EN SAVOIR PLUS", "CONTINUE READING", "[…]", "[...]", "[ … ]", "[&hellip;]", "[&#8230;]", "( … )", "(...)", "(…)", "…", "……",
          "...", ".", "»", "›", "→", "&raquo;", "&rarr;", ";", "]", ")", "[", "(", "e", "E", "s", "S", "g", "G",
          "K", "\u212a", "İ", "ı", "ſ", "«", "!", "?", ",", "–", "-", "a"]
SPACES = ["", " ", "  ", "\u00a0", "\u202f", "\n", "\t", "\u2003", "\u3000", "\u1680", "\x1c", "\u2028"]


def _texts(n: int) -> list[str]:
    rnd = random.Random(47)
    out = []
    for _ in range(n):
        parts = [rnd.choice(SPACES)]
        for _ in range(rnd.randint(0, 6)):
            parts += [rnd.choice(PIECES), rnd.choice(SPACES)]
        out.append("".join(parts))
    return out


CORPUS = _texts(30_000) + ["", " ", "…", " …", "a …", "a. …", "Lire la suite…", "Lire la suite …", "x [...] …",
                           "Fin (…) …", "texte\n", "suite \n", "Read more→", "Read more &rarr;", "pluſ", "la suıte"]


def test_text_tail_is_the_full_search():
    for text in CORPUS:
        fast, full = excerpts._text_tail(text), excerpts._TEXT_TAIL.search(text)
        assert (fast and fast.span()) == (full and full.span()), repr(text)


def test_clean_excerpt_is_unchanged_by_the_shortcut(monkeypatch):
    fast = [excerpts.clean_excerpt(text) for text in CORPUS]
    monkeypatch.setattr(excerpts, "_text_tail", excerpts._TEXT_TAIL.search)
    assert [excerpts.clean_excerpt(text) for text in CORPUS] == fast


HTML_BITS = ['<a href="https://e.com/a">', '<A HREF="x">', "<A HREF='x'>", '<a href="x<y">', '<a href="">', "<a>",
             "</a>", "</A>", "<p>", "</p>", "</P>", "</ p>", "</p >", "<br>", "<strong>", "</strong>", "</h2>",
             "</x_1>", "&raquo;", "&hellip;", "&#8230;", "&nbsp;", "<", ">", "</", '"', "[", "(", "]", ")"]


def _html(n: int) -> list[str]:
    rnd = random.Random(48)
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rnd.randint(0, 7)):
            parts += [rnd.choice(PIECES + HTML_BITS * 2), rnd.choice(SPACES)]
        out.append("".join(parts))
    return out


HTML_CORPUS = _html(40_000) + [
    '<p>Texte <a href="https://e.com/a">Lire la suite</a></p>', '<p>Texte <a href="https://e.com/a">Lire la suite…</a></p>',
    '<p>Texte <a href="x<y">Lire la suite</a></p>', '<p>a <a href="u"> Read more </a> </p>\n', "<p>Texte […]</p>",
    "<p>Texte [ &hellip; ]</p>", "<p>Texte (...)</p>", "<p>Texte Lire la suite…</p>", "<p>Texte Lire la suite . …</p>",
    "<p>Texte…</p>", "<p>Lire plus</p>\n", "Read more &raquo;</a></p>", "<p>[…] […]</p>", "(…) […]</a>"]


def test_the_end_of_html_finds_the_read_more_a_search_finds():
    decided = 0
    for html in HTML_CORPUS:
        fast = excerpts._ending_read_more(html)
        if fast is not excerpts._SEARCH:
            decided += 1
            full = excerpts._HTML_READ_MORE.search(html)
            assert (fast and fast.span()) == (full and full.span()), repr(html)
    assert decided > len(HTML_CORPUS) // 2  # the shortcut is taken often, not just never wrong


def test_clean_excerpt_html_is_unchanged_by_the_shortcut(monkeypatch):
    fast = [excerpts.clean_excerpt_html(html) for html in HTML_CORPUS]
    monkeypatch.setattr(excerpts, "_ending_read_more", lambda html, run=None: excerpts._SEARCH)
    assert [excerpts.clean_excerpt_html(html) for html in HTML_CORPUS] == fast


def test_drop_empty_elements_skips_only_html_without_any():
    def plain(html: str) -> str:
        for _ in range(3):
            html, n = excerpts._EMPTY_ELEMENT.subn("", html)
            if not n:
                break
        return html

    empties = ["<p></p>", "<p> </p>", "<p>\u00a0</p>", "<p>&nbsp;</p>", "<p><br></p>", "<li>\u2003</li>",
               "<p><strong></strong></p>", "<ul><li> </li></ul>", "<b>\n</b>"]
    rnd = random.Random(49)
    corpus = HTML_CORPUS + ["".join(rnd.choice(empties + HTML_BITS + PIECES) for _ in range(rnd.randint(1, 6)))
                            for _ in range(20_000)]
    for html in corpus:
        assert excerpts.drop_empty_elements(html) == plain(html), repr(html)


def test_one_line_takes_its_shortcut_only_where_it_changes_nothing():
    import publisher.text as shared

    def plain(text: str) -> str:  # one_line before its shortcut for printable text
        text = shared._TO_SPACE.sub(" ", text)
        text = text.replace("\ufeff", "")
        text = shared._RUNS.sub(" ", text)
        text = shared._NBSP_RUNS.sub(r"\1", text)
        return text.strip(" \u00a0\u202f")

    rnd = random.Random(50)
    chars = list("ab é’…«»  ") + SPACES + ["\x00", "\x7f", "\x85", "\u2000", "\u200a", "\u200b", "\ufeff", "\u00ad"]
    for _ in range(30_000):
        text = "".join(rnd.choice(chars) for _ in range(rnd.randint(1, 12)))
        assert shared.one_line(text) == plain(text), repr(text)


def test_canonical_url_of_a_plain_url_is_what_urlsplit_gives():
    from urllib.parse import urlsplit, urlunsplit

    import publisher.text as shared

    def plain(url: str) -> str:  # canonical_url's general path, for a URL safe_url returns as is
        parts = urlsplit(url)
        return urlunsplit((parts.scheme, parts.netloc, parts.path, shared._without_tracking(parts.query), ""))

    rnd = random.Random(51)
    bits = ["a", "b=1", "utm_source=rss", "UTM_Medium=x", "fbclid=", "=", "", "x=a=b", "?", "#", "%20", "/", "q"]
    for _ in range(20_000):
        url = "https://www.endurance-info.com/a/" + "".join(rnd.choice(bits + ["&", "&", "?", "#"]) for _ in range(8))
        if shared._PLAIN_URL.match(url):
            assert shared.canonical_url(url) == plain(url), url
