"""Feed entries into Articles: the normalisation rules, on the dict-like entries feedparser returns.

Stable id (guid, else canonical link); canonical absolute http(s) link; title and summary as clean text
and allow-listed HTML with publisher boilerplate removed; published as aware UTC (missing: the fetch
time; future: clamped to it); image from media:content, media:thumbnail, an image enclosure or the
first <img>; author; categories. An entry that cannot make a safe Article is rejected with a reason.
"""

from __future__ import annotations

import functools
import html
import re
from datetime import datetime, timezone
from typing import Any

from publisher.models import Article
from publisher.excerpts import clean_excerpt, clean_excerpt_html, matches
from publisher.sanitize import (canonical_url, fix_entities, html_to_text, one_line, safe_url, sanitize_html,
                                sanitized_to_text)

SUMMARY_CHARS = 600  # a summary taken from full content is cut to about this many characters

# FeedParserDict.get goes through key aliases on every call; for the keys it stores as named, the plain
# dict lookup gives the same value at a fraction of the cost (this loop runs once per entry per fetch).
# Not for "url" (an alias of "href"), "enclosures" (computed from links) or "updated*" (fall back to published).
_get = dict.get


def normalise(entry: Any, *, source: str, base: str | None, now: datetime) -> tuple[Article | None, str | None]:
    """One feedparser entry -> (Article, note) or (None, why it was rejected); note is "undated"/"future"/None."""
    raw_link = _get(entry, "link") or ""
    link = canonical_url(raw_link, base)
    guid = one_line(_get(entry, "id") or "")
    if link is None and not raw_link and guid:
        link = canonical_url(guid, base)  # a permalink guid without <link>
    if link is None:
        if raw_link:
            scheme = one_line(raw_link).split(":", 1)[0][:20] if ":" in raw_link else "relative"
            return None, f"link is not http(s) ({scheme}{':' if scheme != 'relative' else ''})"
        return None, "no link and no guid" if not guid else "no link"
    title = clean_excerpt(one_line(html_to_text((_get(entry, "title") or "")[:TITLE_MAX])))
    if not title:
        return None, "empty title"
    content_html = ""
    for c in _get(entry, "content") or ():
        if "html" in (_get(c, "type") or "html"):
            content_html = _get(c, "value") or ""
            break
    description = _get(entry, "summary") or ""
    if description and description == content_html:  # feedparser copies content:encoded into summary
        description = ""
    description = description[:HTML_MAX]
    if description:
        summary_html = clean_excerpt_html(sanitize_html(description, link))
        if summary_html and not summary_html.startswith(_BLOCKS):  # bare text: give templates one paragraph
            summary_html = f"<p>{summary_html}</p>"
        summary = clean_excerpt(sanitized_to_text(summary_html))  # one HTML parse per entry, not two
    else:
        summary = _cut(clean_excerpt(one_line(html_to_text(content_html[:HTML_MAX]))), SUMMARY_CHARS)
        summary_html = f"<p>{html.escape(summary, quote=False)}</p>" if summary else ""
    published, note = _published(entry, now)
    author = _plain(_get(entry, "author") or "") or None
    categories = _categories(entry)
    return Article(id=guid or link, link=link, title=title, summary=summary, published=published, source=source,
                   summary_html=summary_html, image=_image(entry, content_html or description, link), author=author,
                   categories=categories), note


_BLOCKS = ("<p>", "<ul>", "<ol>", "<blockquote>")

# html.parser is quadratic on some hostile input ('<a href="' repeated: 54 s for 180 KB). We keep an
# excerpt, not the article, so only the start of each field is parsed: at worst about a second an entry.
TITLE_MAX = 2_000
HTML_MAX = 32_768


def _cut(text: str, limit: int) -> str:
    """At most about `limit` characters, cut at a word boundary, never inside a word."""
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0].rstrip(" ,;:–-")
    return cut + "…"


def _published(entry: Any, now: datetime) -> tuple[datetime, str | None]:
    # dict.get: FeedParserDict.get("updated_parsed") falls back to published with a DeprecationWarning
    parsed = dict.get(entry, "published_parsed") or dict.get(entry, "updated_parsed") or dict.get(entry, "created_parsed")
    if not parsed:
        return now.astimezone(timezone.utc), "undated"
    try:
        when = datetime(*parsed[:6], tzinfo=timezone.utc)  # feedparser gives UTC struct_time
    except (TypeError, ValueError):
        return now.astimezone(timezone.utc), "undated"
    if when > now:
        return now.astimezone(timezone.utc), "future"
    return when, None


# A feed repeats the same few authors and categories on every entry: clean each spelling once.
@functools.lru_cache(maxsize=1024)
def _plain(text: str) -> str:
    return one_line(html_to_text(text))


@functools.lru_cache(maxsize=1024)
def _term(text: str) -> str:
    return one_line(fix_entities(html_to_text(text)))


def _categories(entry: Any) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for tag in _get(entry, "tags") or ():
        term = _term(_get(tag, "term") or _get(tag, "label") or "")
        if term and term.casefold() not in {s.casefold() for s in seen}:
            seen[term] = None
    return tuple(seen)


_NO_REL = object()


def _enclosures(entry: Any) -> list:
    """entry.get("enclosures") without the copies FeedParserDict makes: the links whose rel is enclosure."""
    found = []
    for link in _get(entry, "links") or ():
        rel = _get(link, "rel", _NO_REL)  # link["rel"] is a plain lookup, through FeedParserDict's slow path
        if rel is _NO_REL:
            return []  # what FeedParserDict.get does when a link has no rel
        if rel == "enclosure":
            found.append(link)
    return found


_IMG = re.compile(r"<img\b[^>]*>", re.I)
_ATTR = re.compile(r"""\b(src|srcset|data-src|data-lazy-src)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.I)
_ATTR_STARTS = ("src", "data-")
_PIXEL = re.compile(r"""\b(?:width|height)\s*=\s*["']?[01]["'\s/>]""", re.I)
_PIXEL_STARTS = ("width", "height")
_IMAGE_EXT = re.compile(r"\.(?:jpe?g|png|gif|webp|avif)(?:$|[?#])", re.I)


def _image(entry: Any, html: str, link: str) -> str | None:
    """The article's picture: media:content, media:thumbnail, an image enclosure, then the first <img>."""
    for m in _get(entry, "media_content") or ():
        medium, mtype, url = m.get("medium") or "", m.get("type") or "", m.get("url")
        if medium == "image" or mtype.startswith("image/") or (not medium and not mtype and url and _IMAGE_EXT.search(url)):
            if (found := safe_url(url, link)):
                return found
    for m in _get(entry, "media_thumbnail") or ():
        if (found := safe_url(m.get("url"), link)):
            return found
    for enc in _enclosures(entry):
        if (_get(enc, "type") or "").startswith("image/") or _IMAGE_EXT.search(_get(enc, "href") or ""):
            if (found := safe_url(_get(enc, "href"), link)):
                return found
    for source in (html, _get(entry, "summary") or ""):
        for tag in _IMG.findall(source or "")[:5]:
            # Both patterns can only begin at these words: trying them there alone is much cheaper than a scan.
            attrs = {m.group(1).lower(): m.group(2) or m.group(3) or m.group(4) for m in matches(_ATTR, tag, _ATTR_STARTS)}
            if next(matches(_PIXEL, tag, _PIXEL_STARTS), None):  # 1x1 tracking pixels (FeedBurner, stats plugins)
                continue
            for candidate in (_largest(attrs.get("srcset")), attrs.get("data-lazy-src"), attrs.get("data-src"), attrs.get("src")):
                if candidate and not candidate.startswith("data:") and (found := safe_url(fix_entities(candidate), link)):
                    return found
    return None


def _largest(srcset: str | None, max_width: int = 1200) -> str | None:
    """WordPress srcset: the widest candidate up to `max_width` (a 218x150 thumbnail is too small for email)."""
    if not srcset:
        return None
    best, best_w = None, -1
    for part in srcset.split(","):
        bits = part.strip().split()
        if not bits:
            continue
        w = int(bits[1][:-1]) if len(bits) > 1 and bits[1].endswith("w") and bits[1][:-1].isdigit() else 0
        if best_w < w <= max_width:
            best, best_w = bits[0], w
    return best
