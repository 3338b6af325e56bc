"""Lint a finished email before anyone sees it: what mail clients clip, drop or refuse.

Codes: `size` (over 90 KB; Gmail clips at about 102 KB), `img-no-width`, `img-no-alt`,
`css-unsupported` (flex, grid, position:absolute/fixed, background images, external stylesheets),
`script`, `form`, `text-missing`, `link-scheme` (anything but http(s), mailto: and the
%%UNSUBSCRIBE_URL%% placeholder).
"""

from __future__ import annotations

import re

import lxml.html

from publisher.models import PREFERENCES_TOKEN, UNSUBSCRIBE_TOKEN, LintIssue

SIZE_WARN = 90 * 1024
GMAIL_CLIP = 102 * 1024
ALLOWED_PLACEHOLDERS = (UNSUBSCRIBE_TOKEN, PREFERENCES_TOKEN)

_CSS_DROPPED = (
    (re.compile(r"display\s*:\s*(?:inline-)?flex\b", re.I), "display:flex"),
    (re.compile(r"display\s*:\s*(?:inline-)?grid\b", re.I), "display:grid"),
    (re.compile(r"position\s*:\s*(?:absolute|fixed|sticky)\b", re.I), "position:absolute/fixed"),
    (re.compile(r"background(?:-image)?\s*:[^;\"}]*url\(", re.I), "background image url()"),
    (re.compile(r"@import\b", re.I), "@import of a stylesheet"),
)


def lint_email(html: str, text: str) -> tuple[LintIssue, ...]:
    """Problems in a finished email (HTML with CSS inlined, and its text part), worst first."""
    issues: list[LintIssue] = []
    size = len(html.encode("utf-8"))
    if size > GMAIL_CLIP:
        issues.append(LintIssue("size", f"HTML is {size / 1024:.1f} KB: Gmail clips messages over about 102 KB; lower max_articles or shorten the template"))
    elif size > SIZE_WARN:
        issues.append(LintIssue("size", f"HTML is {size / 1024:.1f} KB, over the 90 KB budget (Gmail clips at about 102 KB)"))
    if not text or not text.strip():
        issues.append(LintIssue("text-missing", "no plain-text part: some clients and spam filters need one"))
    if not html.strip():
        issues.append(LintIssue("html-missing", "empty HTML part"))
        return tuple(issues)
    doc = lxml.html.document_fromstring(html)
    _images(doc, issues)
    _css(doc, issues)
    _links(doc, issues)
    for tag, code, why in (("script", "script", "mail clients strip <script>"),
                           ("form", "form", "most mail clients disable <form>"),
                           ("iframe", "css-unsupported", "mail clients block <iframe>")):
        n = len(doc.findall(f".//{tag}"))
        if n:
            issues.append(LintIssue(code, f"{n} <{tag}> element(s): {why}"))
    return tuple(issues)


def _images(doc, issues: list[LintIssue]) -> None:
    for img in doc.iter("img"):
        src = (img.get("src") or "")[:80]
        if not (img.get("width") or "").strip():
            issues.append(LintIssue("img-no-width", f"image {src} has no width attribute (Outlook shows it at full size)"))
        if img.get("alt") is None:
            issues.append(LintIssue("img-no-alt", f"image {src} has no alt text"))


def _css(doc, issues: list[LintIssue]) -> None:
    found: dict[str, int] = {}
    sources = [el.get("style") or "" for el in doc.iter() if isinstance(el.tag, str) and el.get("style")]
    sources += [el.text or "" for el in doc.iter("style")]
    for css in sources:
        for pattern, name in _CSS_DROPPED:
            if pattern.search(css):
                found[name] = found.get(name, 0) + 1
    for name, n in found.items():
        issues.append(LintIssue("css-unsupported", f"{name} used {n} time(s): Gmail or Outlook drops it"))
    for link in doc.iter("link"):
        if "stylesheet" in (link.get("rel") or "").lower():
            issues.append(LintIssue("css-unsupported", f"external stylesheet {link.get('href', '')[:80]}: mail clients do not load it; inline it"))


def _links(doc, issues: list[LintIssue]) -> None:
    for el in doc.iter("a", "area"):
        href = (el.get("href") or "").strip()
        if not href:
            continue
        lower = href.lower()
        if lower.startswith(("http://", "https://", "mailto:")) or href in ALLOWED_PLACEHOLDERS:
            continue
        issues.append(LintIssue("link-scheme", f"link {href[:80]!r} is not http(s): it breaks or is blocked in mail clients"))
    for img in doc.iter("img"):
        src = (img.get("src") or "").strip().lower()
        if src and not src.startswith(("http://", "https://", "cid:")):
            issues.append(LintIssue("link-scheme", f"image source {src[:80]!r} is not http(s)"))
