"""Excerpts: publisher boilerplate removed from feed summaries, in plain text and in sanitised HTML.

    clean_excerpt(text)        "Lire la suite", "[…]", "The post … appeared first on …" removed; a cut excerpt ends with "…"
    clean_excerpt_html(html)   the same on HTML that sanitize_html produced
    matches(pattern, text, starts)   pattern.finditer(text) for a case-insensitive pattern that can only begin
                               at one of a few words: tried at those places alone, which is much cheaper
    drop_empty_elements(html)  allow-listed elements holding nothing visible removed

entries.py calls the first two on every feed summary; sanitize.py calls drop_empty_elements.
"""

from __future__ import annotations

import re
from typing import Iterator

# An allow-listed element holding nothing visible (sanitize_html removes them too).
_EMPTY_ELEMENT = re.compile(r"<(p|strong|em|b|i|li|blockquote|ul|ol)>(?:\s|&nbsp;|\u00a0|<br>)*</\1>")


def drop_empty_elements(html: str) -> str:
    """html without allow-listed elements that hold nothing visible, nested ones included (up to 3 deep)."""
    # An empty element's "</" follows ">", ";" (of &nbsp;), a no-break space or a space; most HTML has no
    # such "</", and then there is nothing to search for.
    i = html.find("</")
    while i >= 0:
        before = html[i - 1] if i else ""
        if before and (before in ">;\u00a0" or before.isspace()):
            break
        i = html.find("</", i + 2)
    else:
        return html
    for _ in range(3):
        html, n = _EMPTY_ELEMENT.subn("", html)
        if not n:
            break
    return html


_ELLIPSIS_MARK = r"(?:\[\s*(?:…|\.\.\.|&hellip;|&#8230;)\s*\]|\(\s*(?:…|\.\.\.)\s*\))"
_READ_MORE = r"(?:Lire la suite|Lire plus|En savoir plus|Continue reading|Read more|Continuer la lecture)"
# "The post X appeared first on Site." (WordPress/Yoast RSS footer) and its French translation.
_FOOTERS = [
    re.compile(r"\s*The post\s.{1,600}?\sappeared first on\s.{1,300}?(?:\.|$)\s*$", re.S),
    re.compile(r"\s*L[’']article\s.{1,600}?\sest apparu en premier sur\s.{1,300}?(?:\.|$)\s*$", re.S),
]
_TEXT_TAIL = re.compile(
    rf"(?:\s*(?:{_ELLIPSIS_MARK}|{_READ_MORE}\s*(?:[.…]+|»|›|→|&raquo;|&rarr;)?|…\s*$))+\s*$", re.I)
_SENTENCE_END = ("." , "!", "?", "…", "»", "\"", "”", ")", ":")


# Searching the boilerplate patterns position by position was most of the cost of ingestion. Each one
# can only start (after its leading spaces) where one of a few words begins, so it is tried there alone,
# in order: the matches are those `finditer` would find. The patterns ignore case; lower-casing finds
# the same places unless the text holds one of the four non-ASCII letters that re.IGNORECASE equates
# with an ASCII one (İ ı ſ K), and then the plain search runs.
_READ_MORE_STARTS = ("lire ", "en savoir plus", "continue", "read more")
_TEXT_TAIL_STARTS = ("[", "(", "…", *_READ_MORE_STARTS)
_HTML_READ_MORE_STARTS = ("[", "(", '<a href="', *_READ_MORE_STARTS)


def _places(text: str, starts: tuple[str, ...], offset: int = 0) -> list[int] | None:
    """Sorted indexes (+ offset) where one of `starts` begins, ignoring case; None if that cannot be exact."""
    if not text.isascii() and ("\u0130" in text or "\u0131" in text or "\u017f" in text or "\u212a" in text):
        return None
    low = text.lower()  # same length as text: only U+0130 lower-cases to two characters
    places = []
    for start in starts:
        i = low.find(start)
        while i >= 0:
            places.append(i + offset)
            i = low.find(start, i + 1)
    places.sort()
    return places


def _matches(pattern: re.Pattern, text: str, places: list[int] | None, spaces: bool = False) -> Iterator[re.Match]:
    """pattern.finditer(text), for a non-empty pattern that starts at one of `places` (or spaces before one)."""
    if places is None:
        yield from pattern.finditer(text)
        return
    end = 0
    for i in places:
        if i < end:
            continue
        while spaces and i > end and text[i - 1].isspace():  # \s is isspace
            i -= 1
        m = pattern.match(text, i)
        if m:
            yield m
            end = m.end()


def matches(pattern: re.Pattern, text: str, starts: tuple[str, ...]) -> Iterator[re.Match]:
    """pattern.finditer(text) for a case-insensitive pattern whose every match begins with one of `starts`."""
    return _matches(pattern, text, _places(text, starts))


def _search_at(pattern: re.Pattern, text: str, places: list[int] | None) -> re.Match | None:
    return next(_matches(pattern, text, places, spaces=True), None)


# Every _TEXT_TAIL piece ends with a mark, an arrow, "&raquo;", or the last word of a read-more phrase
# (re.IGNORECASE lets "ſ" stand for "s", "ı" and "İ" for "i"). Most texts end otherwise, so their end
# alone says there is no match, or that the match is their final "…" alone.
_MARK_ENDS = frozenset("])….»›→;")
_PHRASE_LAST = frozenset("eEsSſgG")
_PIECE_ENDS = _MARK_ENDS | _PHRASE_LAST
_PHRASE_ENDS = ("suite", "plus", "reading", "more", "lecture")
_FOLDED = ("\u0130", "\u0131", "\u017f", "\u212a")  # İ ı ſ K: re.IGNORECASE matches them to ASCII letters


def _ends_phrase(text: str, end: int) -> bool:
    """Whether a read-more phrase may end at text[end - 1] (a cheap test: may say yes wrongly, never no)."""
    if text[end - 1] not in _PHRASE_LAST:
        return False
    tail = text[max(0, end - 7):end]  # the longest last word is 7 letters
    if not tail.isascii() and any(c in tail for c in _FOLDED):
        return True
    return tail.lower().endswith(_PHRASE_ENDS)


def _ends_piece(text: str, end: int) -> bool:
    """Whether a _TEXT_TAIL piece may end at text[end - 1] (may say yes wrongly, never no)."""
    return text[end - 1] in _MARK_ENDS or _ends_phrase(text, end)


def _text_tail(text: str) -> re.Match | None:
    """_TEXT_TAIL.search(text), which can only match at the end: searched for only when the end allows it."""
    end = len(text.rstrip())
    if not end or not _ends_piece(text, end):
        return None
    if text[end - 1] == "…":
        # The usual end of an excerpt. If what comes before it (spaces aside) can end no piece, nothing
        # chains before this "…": the match is the "…" alone, from the spaces before it.
        start = end - 1
        while start and text[start - 1].isspace():
            start -= 1
        if start and not _ends_piece(text, start):
            return _TEXT_TAIL.match(text, start)
    return _search_at(_TEXT_TAIL, text, _places(text, _TEXT_TAIL_STARTS))


def clean_excerpt(text: str) -> str:
    """Plain text without publisher boilerplate; a cut-off excerpt ends with "…"."""
    text = text.strip()
    if "appeared first on" in text or "est apparu en premier sur" in text:
        for footer in _FOOTERS:
            text = footer.sub("", text)
    cut = False
    m = _text_tail(text)
    if m:
        cut, text = True, text[:m.start()] + text[m.end():]
    text = text.strip()
    if cut and text and not text.endswith(_SENTENCE_END):
        text = text.rstrip(" ,;–-") + "…"
    elif text.endswith("...") and not text.endswith("...."):
        text = text[:-3].rstrip() + "…"
    return text


_HTML_FOOTERS = [
    re.compile(r"(?:<p>)?\s*The post\s.{1,1200}?\sappeared first on\s.{1,600}?(?:</a>)?\.?\s*(?:</p>)?\s*$", re.S),
    re.compile(r"(?:<p>)?\s*L[’']article\s.{1,1200}?\sest apparu en premier sur\s.{1,600}?(?:</a>)?\.?\s*(?:</p>)?\s*$", re.S),
]
_HTML_READ_MORE = re.compile(
    rf"\s*(?:<a href=\"[^\"]*\">\s*{_READ_MORE}[^<]{{0,20}}</a>|{_READ_MORE}\s*(?:[.…]+|»|›|→|&raquo;)?|{_ELLIPSIS_MARK})\s*(?=(?:</\w+>\s*)*$)",
    re.I)


_ELLIPSES = re.compile(r"(?:\s*…){2,}")
_STOP_ELLIPSIS = re.compile(r"([.!?»])\s*…(?=(?:</\w+>\s*)*$)")


_LINK_CLOSE = ("</a>", "</A>")
_SEARCH = object()  # _ending_read_more cannot tell: search


def _ending_read_more(html: str, run: int | None = None):
    """_HTML_READ_MORE.search(html) found from the end, or _SEARCH when only a search can tell.

    A match is followed by nothing but closing tags and spaces (the "closing run"). So it is a read-more
    link whose "</a>" opens that run, or a "[…]", "(…)" or read-more phrase just before it: a link's
    "<a href" is the last "<" before the run, and a "[…]" starts at the last "[" (the others hold no "<"
    and no "["). Most HTML ends in a way that shows where the only possible match starts, or that there
    is none, without the case-insensitive scan of the whole text a search needs. `run`: where the closing
    run is known to start, just after a non-space character.
    """
    if run is not None:
        end, link_closes = run, html.startswith(_LINK_CLOSE, run)
    else:
        end, link_closes = len(html), False
        while True:
            while end and html[end - 1].isspace():
                end -= 1
            if not end or html[end - 1] != ">":
                break
            start = html.rfind("</", 0, end)
            name = html[start + 2:end - 1] if start >= 0 else ""
            if not name or not (name.isalnum() or name.replace("_", "a").isalnum()):  # not </\w+>
                break
            end, link_closes = start, name in ("a", "A")
    if not end:
        return None  # nothing before the closing run
    if link_closes:  # the run starts with "</a>": a read-more link, or a phrase or mark inside the link
        opener = html.rfind("<", 0, end)
        if opener < 0 or html[opener:opener + 9].lower() != '<a href="':
            return _SEARCH  # perhaps a "<" inside an href
        nothing_starts_before = opener
        while opener and html[opener - 1].isspace():
            opener -= 1
        found = _HTML_READ_MORE.match(html, opener)
        return found or _search_at(_HTML_READ_MORE, html, _places(html[nothing_starts_before:], _HTML_READ_MORE_STARTS,
                                                                   nothing_starts_before))
    last = html[end - 1]
    if last in "])":
        start = html.rfind("[" if last == "]" else "(", 0, end - 1)
        if start < 0:
            return None
        while start and html[start - 1].isspace():
            start -= 1
        return _HTML_READ_MORE.match(html, start)
    if last in ".…":  # dots end a piece only after a read-more phrase ("Lire la suite…")
        while end and html[end - 1] in ".…":
            end -= 1
        while end and html[end - 1].isspace():
            end -= 1
        return _SEARCH if end and _ends_phrase(html, end) else None
    return _SEARCH if last in "»›→;" or _ends_phrase(html, end) else None


def clean_excerpt_html(html: str) -> str:
    """Sanitised HTML without publisher boilerplate (same rules as clean_excerpt)."""
    if "appeared first on" in html or "est apparu en premier sur" in html:
        for footer in _HTML_FOOTERS:
            html = footer.sub("", html)
    places: list[int] | None = None
    searched = False  # places holds the places of html
    run = None
    for _ in range(3):
        # Only closing tags may follow a match, so one pass has at most one.
        m = _ending_read_more(html, run)
        if m is _SEARCH:
            if not searched:
                places, searched = _places(html, _HTML_READ_MORE_STARTS), True
            m = _search_at(_HTML_READ_MORE, html, places)
        if not m:
            break
        start = m.start()
        html = html[:start] + "…" + html[m.end():]
        run = start + 1  # what followed the match was closing tags alone
        if searched and places is not None:
            # Before the match nothing changed and "…" starts nothing: look again only at what follows it.
            tail = _places(html[start:], _HTML_READ_MORE_STARTS, start)
            places = None if tail is None else [i for i in places if i < start] + tail  # sorted
    if "…" in html:
        if html.count("…") > 1:
            html = _ELLIPSES.sub("…", html)
        # Only the last "…" can have nothing but closing tags after it: try the pattern where it would start.
        i = html.rfind("…")
        while i and html[i - 1].isspace():
            i -= 1
        if i and html[i - 1] in ".!?»" and (m := _STOP_ELLIPSIS.match(html, i - 1)):
            html = html[:m.start()] + m.group(1) + html[m.end():]
    return drop_empty_elements(html).strip()
