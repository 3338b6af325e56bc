"""Excerpts: publisher boilerplate removed from feed summaries, in plain text and in sanitised HTML.

    clean_excerpt(text)        "Lire la suite", "[…]", "The post … appeared first on …" removed; a cut excerpt ends with "…"
    clean_excerpt_html(html)   the same on HTML that sanitize.sanitize_html produced
    matches(pattern, text, starts)   pattern.finditer(text) for a case-insensitive pattern that can only begin
                               at one of a few words: tried at those places alone, which is much cheaper

sanitize.py re-exports clean_excerpt and clean_excerpt_html.
"""

from __future__ import annotations

import re
from typing import Iterator

# An allow-listed element holding nothing visible (sanitize_html removes them too).
_EMPTY_ELEMENT = re.compile(r"<(p|strong|em|b|i|li|blockquote|ul|ol)>(?:\s|&nbsp;|\u00a0|<br>)*</\1>")

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


def clean_excerpt(text: str) -> str:
    """Plain text without publisher boilerplate; a cut-off excerpt ends with "…"."""
    text = text.strip()
    if "appeared first on" in text or "est apparu en premier sur" in text:
        for footer in _FOOTERS:
            text = footer.sub("", text)
    cut = False
    m = _search_at(_TEXT_TAIL, text, _places(text, _TEXT_TAIL_STARTS))  # anchored at the end: one match at most
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


def clean_excerpt_html(html: str) -> str:
    """Sanitised HTML without publisher boilerplate (same rules as clean_excerpt)."""
    if "appeared first on" in html or "est apparu en premier sur" in html:
        for footer in _HTML_FOOTERS:
            html = footer.sub("", html)
    places = _places(html, _HTML_READ_MORE_STARTS)
    for _ in range(3):
        # Only closing tags may follow a match, so one pass has at most one.
        m = _search_at(_HTML_READ_MORE, html, places)
        if not m:
            break
        start = m.start()
        html = html[:start] + "…" + html[m.end():]
        # Before the match nothing changed and "…" starts nothing: look again only at what follows it.
        tail = _places(html[start:], _HTML_READ_MORE_STARTS, start)
        places = None if places is None or tail is None else [i for i in places if i < start] + tail  # sorted
    if "…" in html:
        if html.count("…") > 1:
            html = _ELLIPSES.sub("…", html)
        # Only the last "…" can have nothing but closing tags after it: try the pattern where it would start.
        i = html.rfind("…")
        while i and html[i - 1].isspace():
            i -= 1
        if i and (m := _STOP_ELLIPSIS.match(html, i - 1)):
            html = html[:m.start()] + m.group(1) + html[m.end():]
    for _ in range(3):
        html, n = _EMPTY_ELEMENT.subn("", html)
        if not n:
            break
    return html.strip()
