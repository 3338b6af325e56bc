"""Text and links every stage shares: safe http(s) URLs and one-line text.

Feed text is untrusted; these are the two rules it meets wherever it goes. A URL that leaves `safe_url` is
absolute http(s) with nothing a browser would read differently; text that leaves `one_line` has no CR, LF
or control character, so it may go into a mail header or a post.

    safe_url(url, base)       absolute http(s) URL or None
    canonical_url(url, base)  safe_url, minus fragment, tracking parameters and default port
    one_line(text)            no CR/LF/control characters, whitespace collapsed
    fix_entities(text)        entities of doubly escaped text decoded

HTML is cleaned in ingest/sanitize.py; this module stays small because every stage imports it.
"""

from __future__ import annotations

import html as htmllib
import re
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

# -- URLs --------------------------------------------------------------------------------------

# Browsers ignore tab/CR/LF inside URLs, so "java\tscript:" is javascript: to them; remove them first.
_URL_JUNK = re.compile(r"[\x00-\x1f\x7f]+")
_URL_SAFE_CHARS = "/%:@!$&'()*+,;=-._~?#[]"
_TRACKING = frozenset({
    "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "twclid", "igshid", "mc_cid", "mc_eid",
    "_hsenc", "_hsmi", "mkt_tok", "xtor", "at_medium", "at_campaign", "at_campaign_type", "at_creation",
    "at_emailtype", "at_link", "at_send_date", "ocid", "spm", "__twitter_impression", "oly_anon_id", "oly_enc_id",
    "vero_id", "wt_mc", "ncid", "cmpid", "s_cid",
})
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_PLAIN_URL = re.compile(r"https?://[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?/[A-Za-z0-9\-._~%!$&'()*+,;=:@/]*"
                        r"(?:\?[A-Za-z0-9\-._~%!$&'()*+,;=:@/?]*)?(?:#[A-Za-z0-9\-._~%!$&'()*+,;=:@/?]*)?\Z")


def safe_url(url: str | None, base: str | None = None) -> str | None:
    """`url` as an absolute http(s) URL (resolved against `base`), or None for anything else."""
    if not url:
        return None
    if _PLAIN_URL.match(url):  # most feed URLs: already absolute, lower-case host, nothing to encode
        return url
    url = _URL_JUNK.sub("", url).strip(" ")
    if not url:
        return None
    if url.startswith("//"):  # protocol-relative: the base's scheme, else https
        url = (urlsplit(base).scheme if base else "https") + ":" + url
    elif base and not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", url):
        base_ok = safe_url(base)
        if base_ok is None:
            return None
        url = urljoin(base_ok, url)
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not host:
        return None
    netloc = parts.netloc.rsplit("@", 1)[-1]
    if not re.fullmatch(r"[A-Za-z0-9.\-\[\]:\u0080-\uffff]+", netloc):
        return None
    host = host.lower()
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    netloc = userinfo + (f"[{host}]" if ":" in host else host) + (f":{port}" if port is not None else "")
    path = quote(parts.path, safe=_URL_SAFE_CHARS) or "/"
    query = quote(parts.query, safe=_URL_SAFE_CHARS)
    fragment = quote(parts.fragment, safe=_URL_SAFE_CHARS)
    return urlunsplit((scheme, netloc, path, query, fragment))


def canonical_url(url: str | None, base: str | None = None) -> str | None:
    """The one spelling of an article URL: safe_url without fragment, tracking parameters or default port."""
    if url and _PLAIN_URL.match(url):  # safe_url would return it as is, and its host has no port
        if "?" not in url and "#" not in url:
            return url
        # What urlsplit and urlunsplit give for such a URL, at a fraction of their cost.
        head, _, query = url.partition("#")[0].partition("?")
        query = _without_tracking(query)
        return f"{head}?{query}" if query else head
    url = safe_url(url, base)
    if url is None:
        return None
    if "?" not in url and "#" not in url and _PLAIN_URL.match(url):
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.port is not None and str(parts.port) == _DEFAULT_PORTS[parts.scheme]:
        netloc = netloc.rsplit(":", 1)[0]
    return urlunsplit((parts.scheme, netloc, parts.path, _without_tracking(parts.query), ""))


def _without_tracking(query: str) -> str:
    return "&".join(p for p in query.split("&") if p and not _is_tracking(p.split("=", 1)[0])) if query else ""


def _is_tracking(name: str) -> bool:
    name = name.lower()
    return name.startswith("utm_") or name in _TRACKING


# -- plain text --------------------------------------------------------------------------------

# C0/C1 controls and Unicode line/paragraph separators: none of them may reach a mail header.
CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ufeff]")
# Every other kind of space becomes a plain one; then runs collapse. A regex callback per run was the
# hot spot of ingestion, hence two plain substitutions.
_TO_SPACE = re.compile(r"[\t\n\r\f\v\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u2000-\u200a\u3000]")
_RUNS = re.compile(r"  +")
_NBSP_RUNS = re.compile(r" *([\u00a0\u202f])[ \u00a0\u202f]*")
_ENTITY = re.compile(r"&(?:#\d{1,7}|#x[0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")


def one_line(text: str | None) -> str:
    """Text with no CR, LF or control characters, runs of whitespace collapsed, ends trimmed.

    French typography puts a no-break space before « : ; ! ? »: a run of spaces that holds one keeps it.
    """
    if not text:
        return ""
    if text.isprintable():  # the usual case: no control, line break, odd space, BOM or no-break space
        return (_RUNS.sub(" ", text) if "  " in text else text).strip(" ")
    text = _TO_SPACE.sub(" ", text)
    if "\ufeff" in text:
        text = text.replace("\ufeff", "")
    if "  " in text:
        text = _RUNS.sub(" ", text)
    if "\u00a0" in text or "\u202f" in text:
        text = _NBSP_RUNS.sub(r"\1", text)
    return text.strip(" \u00a0\u202f")


def fix_entities(text: str) -> str:
    """Decode entities left in text that was escaped twice ("L&amp;#8217;ACO" -> "L’ACO")."""
    for _ in range(2):
        if "&" not in text or not _ENTITY.search(text):
            break
        text = htmllib.unescape(text)
    return text


_NOT_IN_FILE_NAMES = re.compile(r"[^A-Za-z0-9@._+-]")


def slug(text: str) -> str:
    """A file name part from an address or a ledger key: `endurance/2026-W47` -> `endurance_2026-W47`."""
    return _NOT_IN_FILE_NAMES.sub("_", text)
