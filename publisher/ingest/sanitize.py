"""Cleaning HTML that comes from feeds: allow-listed HTML and its visible text.

Feed text is untrusted. feedparser does not escape RSS titles or remove `javascript:` links for us, and
it is asked not to sanitise at all (we do it once, here): everything that leaves this module is either
plain text with no control characters, or HTML built by us from an allow-list.

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

import nh3

from publisher.ingest.excerpts import drop_empty_elements
from publisher.text import CONTROLS, canonical_url, fix_entities, one_line

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
        html = CONTROLS.sub("", html)
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
        return html if html.isprintable() else CONTROLS.sub(" ", html)
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
