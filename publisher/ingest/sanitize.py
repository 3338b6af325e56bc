"""Cleaning text that comes from feeds: URLs, one-line text, allow-listed HTML.

Feed text is untrusted. feedparser does not escape RSS titles or remove `javascript:` links for us, and
it is asked not to sanitise at all (we do it once, here): everything that leaves this module is either
plain text with no control characters, or HTML built by us from an allow-list.

    safe_url(url, base)       absolute http(s) URL or None
    canonical_url(url, base)  safe_url, minus fragment, tracking parameters and default port
    one_line(text)            no CR/LF/control characters, whitespace collapsed
    html_to_text(html)        visible text, entities decoded, scripts and styles dropped
    sanitize_html(html, base) allow-listed HTML (p, br, a[href http(s)], strong, em, b, i, ul, ol, li, blockquote),
                              cleaned by nh3 (ammonia)
    sanitized_to_text(html)   one-line text of what sanitize_html produced

Boilerplate ("Lire la suite", "The post … appeared first on …") is removed by excerpts.py.
"""

from __future__ import annotations

import html as htmllib
import re
from html.parser import HTMLParser
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

import nh3

from publisher.ingest.excerpts import drop_empty_elements

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
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ufeff]")
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


# -- HTML --------------------------------------------------------------------------------------

_DROP_WITH_CONTENT = frozenset({"script", "style", "noscript", "template", "iframe", "object", "embed", "svg",
                                "math", "head", "title", "textarea", "select", "button", "form"})
_ALLOWED = frozenset({"p", "br", "a", "strong", "em", "b", "i", "ul", "ol", "li", "blockquote"})
_BLOCK = frozenset({"p", "div", "br", "li", "ul", "ol", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "tr",
                    "table", "section", "article", "figure", "figcaption", "hr", "pre", "header", "footer"})
_VOID = frozenset({"br", "img", "hr", "input", "meta", "link", "source", "wbr", "col", "area", "base", "embed", "param", "track"})
_LOOKS_LIKE_HTML = re.compile(r"<[A-Za-z/!]|&")


# html_to_text: most feed HTML is plain tags with quoted attributes. For that subset one regex finds the
# same events html.parser would send (same tag names, same unescaped text) at a fraction of its cost;
# anything else (comments, declarations, unquoted or odd attributes, scripts and other raw-text elements,
# a '<' that starts no tag) goes through html.parser itself, so the text logic below exists once.
_WS = "[ \t\n\r\f]"


def _simple_tags(group: str) -> str:
    # Possessive (*+, ++): what a part matched is never what the next part needs, so there is nothing to
    # backtrack to, and the engine keeps no state for it.
    return (rf"<{group}[A-Za-z][A-Za-z0-9]*+){group}(?:{_WS}++[A-Za-z][-A-Za-z0-9_:.]*+"
            rf"(?:{_WS}*+={_WS}*+(?:\"[^\"<>]*+\"|'[^'<>]*+'))?)*+){_WS}*+{group}/?)>|</{group}[A-Za-z][A-Za-z0-9]*+)>")


# Text runs, simple tags, or a lone "<" that starts none of them (then the HTML is not simple): findall
# cuts any input into these, end to end, in one pass.
_SIMPLE_TOKEN = re.compile(rf"([^<]++)|{_simple_tags('(')}|<")
_SIMPLE_ATTR = re.compile(rf"([A-Za-z][-A-Za-z0-9_:.]*)(?:{_WS}*={_WS}*(?:\"([^\"<>]*)\"|'([^'<>]*)'))?")
# Elements whose content html.parser (in some Python version) reads as raw text: always the slow path.
_RAW_TEXT = frozenset({"script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes", "noscript",
                       "plaintext"})
# Every "<" starts a token, so an opening tag of one of those is either a simple tag or a lone "<": either
# way the HTML is not simple, and two C-level searches say so without a loop over the tokens.
_RAW_TEXT_OPEN = re.compile(rf"<(?:{'|'.join(sorted(_RAW_TEXT))})(?![A-Za-z0-9])", re.I | re.A)
_LONE_LT = ("", "", "", "", "")  # the token of a "<" that starts no simple tag


def _feed_simple(parser, html: str) -> bool:
    """Send `html`'s events to the handle_* methods of `parser` if it is simple HTML; False (nothing sent) otherwise.

    Only an <a>'s href is passed on (decoded): it is the one attribute our parsers read. A valueless href
    comes as "" where html.parser says None: both mean no link.
    """
    tokens = _SIMPLE_TOKEN.findall(html)
    if _LONE_LT in tokens or _RAW_TEXT_OPEN.search(html):
        return False
    unescape = htmllib.unescape
    data, start, end = parser.handle_data, parser.handle_starttag, parser.handle_endtag
    for text, tag, attr_text, empty, closing in tokens:
        if text:
            data(unescape(text) if "&" in text else text)
        elif tag:
            tag = tag.lower()
            attrs = []
            if tag == "a" and attr_text:
                for name, double, single in _SIMPLE_ATTR.findall(attr_text):
                    if name.lower() == "href":
                        value = double or single
                        attrs = [("href", unescape(value) if "&" in value else value)]  # the last one counts
            (parser.handle_startendtag if empty else start)(tag, attrs)
        else:
            end(closing.lower())
    return True


def _read(handler, parser_class: type, html: str, *args):
    """`handler` fed with html's events if it is simple HTML, else a new parser_class(*args) fed by html.parser.

    The handlers are plain classes: html.parser's own set-up is paid only for the HTML that needs it.
    """
    if _feed_simple(handler, html):
        return handler
    parser = parser_class(*args)
    parser.feed(html)
    parser.close()
    return parser


# Block elements that are not kept still separate the words around them ("<h2>Titre</h2>texte" is
# "Titre texte"): a space goes in front of each of their tags before nh3 drops the tags themselves.
_SEPARATING_TAG = re.compile(r"</?(?:" + "|".join(sorted(_BLOCK - _ALLOWED)) + r")(?![A-Za-z0-9])", re.IGNORECASE)
_HREFLESS_A = re.compile(r"<a>(.*?)</a>", re.DOTALL)  # nh3's output never nests <a>
_NH3_HREF = re.compile(r'<a href="([^"]*)">')  # how nh3 writes the one attribute it keeps
# Runs of HTML whitespace become one space. Starting with a class lets re jump from space to space, and a
# lone " " is already right, so it is not rewritten.
_HTML_SPACES = re.compile(r"[ \t\n\r\f\v](?:[ \t\n\r\f\v]+|(?<=[\t\n\r\f\v]))")
# Built once: a Cleaner costs a third of what nh3.clean() pays to set one up on every call. Links are made
# canonical afterwards, on its output, rather than in an attribute_filter (a Python call per attribute
# from inside nh3 doubled the cost of a summary). "*": no attribute on any tag but those named (not even lang, title).
_CLEANER = nh3.Cleaner(tags=_ALLOWED, attributes={"a": {"href"}, "*": set()}, clean_content_tags=_DROP_WITH_CONTENT,
                       url_schemes={"http", "https"}, link_rel=None, strip_comments=True)


def sanitize_html(html: str | None, base: str | None = None) -> str:
    """Allow-listed HTML: p, br, a (http(s) href only), strong, em, b, i, ul, ol, li, blockquote; no attributes but href.

    nh3 (ammonia, an HTML5 parser in Rust) does the cleaning in linear time; around it, our rules: every
    link made canonical against `base`, a link that is not http(s) unwrapped (its text kept), scripts
    and the like dropped with their content, and a dropped block element leaving a space.
    """
    if not html:
        return ""
    if not html.isprintable():  # control characters are unprintable; the check costs half the substitution
        html = _CONTROLS.sub("", html)
    if "<" in html:
        html = _SEPARATING_TAG.sub(r" \g<0>", html)
    out = _CLEANER.clean(html)
    if "<a" in out:
        out = _NH3_HREF.sub(lambda m: _link(m.group(1), base), out)
        if "<a>" in out:  # javascript:, data:, mailto:, missing: keep the text, drop the link
            out = _HREFLESS_A.sub(r"\1", out)
    if "&nbsp;" in out:  # the serializer writes U+00A0 as an entity; French text is full of them: keep the character
        out = out.replace("&nbsp;", "\u00a0")
    if "  " in out or "\n" in out or "\t" in out or "\r" in out or "\f" in out or "\v" in out:
        out = _HTML_SPACES.sub(" ", out)
    return drop_empty_elements(out).strip()


def _link(written: str, base: str | None) -> str:
    """The opening tag of a kept link, its href canonical; a bare <a> (unwrapped later) when it is not safe."""
    href = canonical_url(htmllib.unescape(written) if "&" in written else written, base)
    return "<a>" if href is None else f'<a href="{htmllib.escape(href, quote=True)}">'


class _Text:
    def __init__(self) -> None:
        self.out: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in _DROP_WITH_CONTENT and tag not in _VOID:
            self.skip += 1
        elif tag in _BLOCK:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROP_WITH_CONTENT and tag not in _VOID:
            self.skip = max(0, self.skip - 1)
        elif tag in _BLOCK:
            self.out.append("\n")

    def handle_startendtag(self, tag: str, attrs) -> None:  # <br/>: what HTMLParser does by default
        self.handle_starttag(tag, attrs)
        self.handle_endtag(tag)

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.out.append(data)


class _TextParser(_Text, HTMLParser):
    def __init__(self) -> None:
        _Text.__init__(self)
        HTMLParser.__init__(self, convert_charrefs=True)


def html_to_text(html: str | None) -> str:
    """The visible text of an HTML fragment: tags dropped (scripts with their content), entities decoded.

    Paragraph breaks become newlines; use one_line() when the text must fit on one line.
    """
    if not html:
        return ""
    if not _LOOKS_LIKE_HTML.search(html):  # most titles: nothing to parse
        return html if html.isprintable() else _CONTROLS.sub(" ", html)
    text = fix_entities("".join(_read(_Text(), _TextParser, html).out))
    lines = (one_line(line) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


# Our own tags hold no "<", so two plain substitutions do what one with a per-tag callback did, at half the cost.
_OWN_BLOCK_TAG = re.compile(r"</?(?:p|br|li|ul|ol|blockquote)\b[^>]*>")
_OWN_INLINE_TAG = re.compile(r"</?(?:a|strong|em|b|i)\b[^>]*>")


def sanitized_to_text(html: str) -> str:
    """Plain one-line text of HTML that sanitize_html produced (our own well-formed output: no parser needed)."""
    if "<" in html:
        html = _OWN_BLOCK_TAG.sub(" ", html)
        if "<" in html:
            html = _OWN_INLINE_TAG.sub("", html)
    return one_line(htmllib.unescape(html) if "&" in html else html)
