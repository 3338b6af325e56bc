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
from typing import Any, Callable, Iterable, Sequence

from publisher.ingest.excerpts import clean_excerpt, clean_excerpt_html, matches
from publisher.ingest.sanitize import html_to_text, sanitize_html, sanitized_to_text
from publisher.text import canonical_url, fix_entities, one_line, safe_url
from publisher.models import Article

SUMMARY_CHARS = 600  # a summary taken from full content is cut to about this many characters

# FeedParserDict.get goes through key aliases on every call; for the keys it stores as named, the plain
# dict lookup gives the same value at a fraction of the cost (this loop runs once per entry per fetch).
# Not for "url" (an alias of "href"), "enclosures" (computed from links) or "updated*" (fall back to published).
_get = dict.get


class _Rejected(Exception):
    """An entry that cannot make a safe Article; the message says why."""


def normalise_all(entries: Sequence[Any], *, source: str, base: str | None, now: datetime) -> list[Any]:
    """Feedparser entries -> for each, (Article, note), (None, why it was rejected) or the exception it raised.

    note is "undated", "future" or None. One odd entry never costs the others: an exception stops that
    entry alone. The rules run stage by stage over a batch of entries rather than entry by entry: each
    stage's code (the sanitiser, the regex engine's paths) then stays hot in the processor's caches,
    which takes a sixth off the time of a feed. Batches keep the stages' intermediate results small.
    """
    results: list[Any] = []
    for start in range(0, len(entries), BATCH):
        results += _normalise_batch(entries[start:start + BATCH], source=source, base=base, now=now)
    return results


BATCH = 256


def _normalise_batch(entries: Sequence[Any], *, source: str, base: str | None, now: datetime) -> list[Any]:
    results: list[Any] = [None] * len(entries)
    ids = _each(range(len(entries)), results, lambda i: _identity(entries[i], base))
    titles = _each(ids, results, lambda i: _title(entries[i]))
    bodies = _each(titles, results, lambda i: _bodies(entries[i]))
    sanitized = _each(bodies, results, lambda i: sanitize_html(bodies[i][1], ids[i][0]) if bodies[i][1] else None)
    htmls = _each(sanitized, results, lambda i: _summary_html(sanitized[i]))
    summaries = _each(htmls, results, lambda i: _summary(htmls[i], bodies[i][0]))
    facts = _each(summaries, results, lambda i: (*_published(entries[i], now), _plain(_get(entries[i], "author") or "")
                                                 or None, _categories(entries[i])))
    images = _each(facts, results, lambda i: _image(entries[i], bodies[i][0] or bodies[i][1], ids[i][0]))
    for i, image in images.items():
        (link, guid), (summary_html, summary), (published, note, author, categories) = ids[i], summaries[i], facts[i]
        try:
            thumbnail = _thumbnail(entries[i], bodies[i][0] or bodies[i][1], link, image) if image else None
            results[i] = (Article(id=guid or link, link=link, title=titles[i], summary=summary, published=published,
                                  source=source, summary_html=summary_html, image=image, author=author,
                                  categories=categories, thumbnail=thumbnail), note)
        except Exception as exc:
            results[i] = exc
    return results


def _each(live: Iterable[int], results: list[Any], stage: Callable[[int], Any]) -> dict[int, Any]:
    """stage(i) for each live entry i; a rejection or an exception becomes that entry's result and drops it."""
    out = {}
    for i in live:
        try:
            out[i] = stage(i)
        except _Rejected as why:
            results[i] = (None, str(why))
        except Exception as exc:  # one odd entry never costs the others
            results[i] = exc
    return out


def _identity(entry: Any, base: str | None) -> tuple[str, str]:
    """(canonical link, guid); _Rejected without an http(s) link."""
    raw_link = _get(entry, "link") or ""
    link = canonical_url(raw_link, base)
    guid = one_line(_get(entry, "id") or "")
    if link is None and not raw_link and guid:
        link = canonical_url(guid, base)  # a permalink guid without <link>
    if link is None:
        if raw_link:
            scheme = one_line(raw_link).split(":", 1)[0][:20] if ":" in raw_link else "relative"
            raise _Rejected(f"link is not http(s) ({scheme}{':' if scheme != 'relative' else ''})")
        raise _Rejected("no link and no guid" if not guid else "no link")
    return link, guid


def _title(entry: Any) -> str:
    title = clean_excerpt(one_line(html_to_text((_get(entry, "title") or "")[:TITLE_MAX])))
    if not title:
        raise _Rejected("empty title")
    return title


def _bodies(entry: Any) -> tuple[str, str]:
    """(content HTML, description HTML), each perhaps empty."""
    content_html = ""
    for c in _get(entry, "content") or ():
        if "html" in (_get(c, "type") or "html"):
            content_html = _get(c, "value") or ""
            break
    description = _get(entry, "summary") or ""
    if description and description == content_html:  # feedparser copies content:encoded into summary
        description = ""
    return content_html, description[:HTML_MAX]


def _summary_html(sanitized: str | None) -> str | None:
    """The sanitised description without boilerplate, or None when there is no description."""
    if sanitized is None:
        return None
    summary_html = clean_excerpt_html(sanitized)
    if summary_html and not summary_html.startswith(_BLOCKS):  # bare text: give templates one paragraph
        summary_html = f"<p>{summary_html}</p>"
    return summary_html


def _summary(summary_html: str | None, content_html: str) -> tuple[str, str]:
    """(summary HTML, summary text): from the description's HTML, else cut from the content."""
    if summary_html is not None:
        return summary_html, clean_excerpt(sanitized_to_text(summary_html))  # one HTML parse per entry, not two
    summary = _cut(clean_excerpt(one_line(html_to_text(content_html[:HTML_MAX]))), SUMMARY_CHARS)
    return (f"<p>{html.escape(summary, quote=False)}</p>" if summary else ""), summary


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
    kept: list[str] = []
    folded: set[str] = set()  # the first spelling of a category wins, whatever its case
    for tag in _get(entry, "tags") or ():
        term = _term(_get(tag, "term") or _get(tag, "label") or "")
        if term and (key := term.casefold()) not in folded:
            folded.add(key)
            kept.append(term)
    return tuple(kept)


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


THUMB_MIN_WIDTH = 200  # an email list shows 120 px: a WordPress 218x150 is sharp on a 2x screen too


def _thumbnail(entry: Any, html: str, link: str, image: str) -> str | None:
    """A small size of the article's image that the feed offers: media:thumbnail, else the smallest srcset
    candidate at least THUMB_MIN_WIDTH wide; None when the feed offers none (the image itself is shown)."""
    for m in _get(entry, "media_thumbnail") or ():
        if (found := safe_url(m.get("url"), link)) and found != image:
            return found
    for source in (html, _get(entry, "summary") or ""):
        for tag in _IMG.findall(source or "")[:5]:
            attrs = {m.group(1).lower(): m.group(2) or m.group(3) or m.group(4) for m in matches(_ATTR, tag, _ATTR_STARTS)}
            small = _smallest(attrs.get("srcset"), THUMB_MIN_WIDTH)
            if small and (found := safe_url(fix_entities(small), link)) and found != image:
                return found
    return None


def _smallest(srcset: str | None, min_width: int) -> str | None:
    """The narrowest srcset candidate at least `min_width` wide."""
    best, best_w = None, None
    for part in (srcset or "").split(","):
        bits = part.strip().split()
        if len(bits) > 1 and bits[1].endswith("w") and bits[1][:-1].isdigit():
            w = int(bits[1][:-1])
            if w >= min_width and (best_w is None or w < best_w):
                best, best_w = bits[0], w
    return best


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
