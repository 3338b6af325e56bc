"""Counting a post's characters the ways social networks do: links and grapheme clusters.

Shared by the channel modules that declare their length rule with it (mastodon.py, bluesky.py) and by
render/posts.py, which lists a post's links. X counts with the official twitter-text rules (x.py).
"""

from __future__ import annotations

import re

URL_LENGTH = 23  # t.co and Mastodon both count any link as 23 characters
_URL = re.compile(r"https?://[^\s<>\"'«»]+", re.IGNORECASE)
_TRAILING = ".,;:!?)]}'\"»"  # punctuation right after a link is not part of it (twitter-text does the same)
# Fast path (grapheme segmentation in pure Python is slow, and most French text never needs it): text
# made only of these characters has one grapheme cluster per code point (no marks, joiners, CR LF).
_SIMPLE = re.compile("[\n\t\u0020-\u007e\u00a0-\u02ff\u2010-\u2027\u2030-\u205e]*")


def url_spans(text: str) -> list[tuple[int, int]]:
    """Spans of the http(s) URLs in `text`, without trailing punctuation."""
    spans = []
    for m in _URL.finditer(text):
        end = m.end()
        while end > m.start() and text[end - 1] in _TRAILING:
            end -= 1
        spans.append((m.start(), end))
    return spans


def links_in(text: str) -> tuple[str, ...]:
    """Every http(s) URL in `text`, in order (what a network turns into a link)."""
    return tuple(text[a:b] for a, b in url_spans(text))


def graphemes(text: str) -> int:
    """The number of user-perceived characters (extended grapheme clusters) in `text`."""
    if _SIMPLE.fullmatch(text):
        return len(text)
    import grapheme  # deferred for start-up time: every command loads this module with the channel registry

    return grapheme.length(text)


def with_links_as(text: str, url_length: int, plain) -> int:  # noqa: ANN001 - plain: Callable[[str], int]
    """`text` counted with every http(s) link as `url_length` and the text between links by `plain`."""
    total, pos = 0, 0
    for a, b in url_spans(text):
        total += plain(text[pos:a]) + url_length
        pos = b
    return total + plain(text[pos:])


def utf16_length(text: str) -> int:
    """`text` in UTF-16 code units (an emoji or any character beyond the BMP is 2): never less than its
    grapheme or code point count, so a post within a limit counted this way fits however the network counts."""
    return len(text.encode("utf-16-le")) // 2
