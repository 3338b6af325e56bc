"""publisher.ingest.sanitize: URLs, one-line text, the HTML allow-list, publisher boilerplate."""

from __future__ import annotations

import pytest

from publisher.ingest.excerpts import clean_excerpt, clean_excerpt_html
from publisher.ingest.sanitize import html_to_text, sanitize_html
from publisher.text import canonical_url, one_line, safe_url

BASE = "https://www.endurance-info.com/version-francaise/wec/"


@pytest.mark.parametrize("url", [
    "javascript:alert(1)", " JaVaScRiPt:alert(1)", "java\tscript:alert(1)", "java\nscript:alert(1)",
    "data:text/html;base64,PHNjcmlwdD4=", "vbscript:msgbox(1)", "mailto:a@b.fr", "ftp://example.org/f",
    "file:///etc/passwd", "", None, "https://", "https://exa mple.com/", "http://[::1", "about:blank",
])
def test_safe_url_refuses_everything_but_http(url):
    assert safe_url(url, BASE) is None


def test_safe_url_resolves_relative_links_against_the_base():
    assert safe_url("/a/b.html", BASE) == "https://www.endurance-info.com/a/b.html"
    assert safe_url("c.html", BASE) == BASE + "c.html"
    assert safe_url("//cdn.example.org/x.jpg", BASE) == "https://cdn.example.org/x.jpg"
    assert safe_url("//cdn.example.org/x.jpg") == "https://cdn.example.org/x.jpg"
    assert safe_url("/a", None) is None  # relative with no base: nothing to resolve against
    assert safe_url("/a", "javascript:alert(1)") is None


def test_safe_url_normalises_host_and_encodes_unsafe_characters():
    assert safe_url("HTTPS://WWW.Endurance-Info.COM/Été 2026/?q=é") == \
        "https://www.endurance-info.com/%C3%89t%C3%A9%202026/?q=%C3%A9"
    assert safe_url('https://e.com/a"onmouseover="x') == "https://e.com/a%22onmouseover=%22x"


def test_canonical_url_drops_tracking_parameters_fragment_and_default_port():
    url = ("https://www.endurance-info.com:443/version-francaise/wec/a-1.html?utm_source=rss&utm_medium=rss"
           "&p=12&fbclid=abc&gclid=x&xtor=RSS-1&mc_cid=1#comments")
    assert canonical_url(url) == "https://www.endurance-info.com/version-francaise/wec/a-1.html?p=12"
    assert canonical_url("http://e.com:8080/x?utm_campaign=a") == "http://e.com:8080/x"
    assert canonical_url("https://e.com") == "https://e.com/"


def test_one_line_strips_line_breaks_and_control_characters():
    text = "WEC :\r\n le titre\u2028piégé\x00\x1b[31m\tfin  "
    out = one_line(text)
    assert out == "WEC : le titre piégé [31m fin"
    assert not any(c in out for c in "\r\n\u2028\u2029\x00\x1b")


def test_one_line_keeps_french_no_break_spaces():
    assert one_line("Rallycross France\u00a0: « Bossard »") == "Rallycross France\u00a0: « Bossard »"
    assert one_line("a \u00a0 b") == "a\u00a0b"


def test_sanitize_html_keeps_only_the_allow_list():
    dirty = ('<div class="x"><p onclick="steal()" style="color:red">Texte <script>alert(1)</script>'
             '<strong>gras</strong> <em>it</em> <b>b</b> <i>i</i><br/><img src="x" onerror="alert(1)">'
             '<a href="javascript:alert(1)" title="t">js</a> <a href="/ok?utm_source=x" target="_blank" onmouseover="y">ok</a>'
             '<iframe src="https://evil.example/"></iframe><style>p{}</style><span>span</span></p>'
             '<ul><li>un</li><li>deux</li></ul><blockquote>cite</blockquote><h2>Titre</h2><table><tr><td>c</td></tr></table></div>')
    clean = sanitize_html(dirty, BASE)
    assert clean == ('<p>Texte <strong>gras</strong> <em>it</em> <b>b</b> <i>i</i><br>js '
                     '<a href="https://www.endurance-info.com/ok">ok</a>span</p><ul><li>un</li><li>deux</li></ul>'
                     '<blockquote>cite</blockquote> Titre c')
    for bad in ("script", "alert", "onerror", "onclick", "javascript", "iframe", "style", "img", "class", "target"):
        assert bad not in clean


def test_sanitize_html_closes_what_it_opens_and_ignores_stray_closers():
    assert sanitize_html("<p><strong>pas fermé") == "<p><strong>pas fermé</strong></p>"
    assert sanitize_html("texte</em></p></a> suite") == "texte suite"
    assert sanitize_html("<p><script>if (a < b) { x('</p>') }</script>après</p>") == "<p>après</p>"
    assert sanitize_html("<p></p><p> </p><p><strong></strong></p>") == ""


def test_sanitize_html_escapes_text_and_attribute_values():
    clean = sanitize_html('<p>a &lt;script&gt; &amp; b</p><a href="https://e.com/?a=1&amp;b=&quot;2">l</a>')
    assert "<script>" not in clean
    assert "&lt;script&gt; &amp; b" in clean
    assert 'href="https://e.com/?a=1&amp;b=%222"' in clean


def test_html_to_text_decodes_entities_and_drops_scripts():
    assert html_to_text("<p>L&#8217;ACO &laquo;&nbsp;Le Mans&nbsp;&raquo;</p><script>x()</script><p>Suite</p>") == \
        "L’ACO «\u00a0Le Mans\u00a0»\nSuite"
    assert html_to_text("L&amp;#8217;ACO") == "L’ACO"  # escaped twice by the publisher's CMS
    assert html_to_text("Pas de balise") == "Pas de balise"


@pytest.mark.parametrize("raw, clean", [
    ("Alors que personne ne l’attendait depuis Lire la suite", "Alors que personne ne l’attendait depuis…"),
    ("Une phrase complète. Lire la suite →", "Une phrase complète."),
    ("Texte coupé [&hellip;]", "Texte coupé…"),
    ("Texte coupé […]", "Texte coupé…"),
    ("Texte coupé [...]", "Texte coupé…"),
    ("Texte coupé...", "Texte coupé…"),
    ("Résumé. The post Un titre appeared first on Endurance-Info.", "Résumé."),
    ("Résumé. L’article Un titre est apparu en premier sur Rallycross France Info.", "Résumé."),
    ("Une citation […] au milieu reste.", "Une citation […] au milieu reste."),
    ("Rien à enlever.", "Rien à enlever."),
])
def test_clean_excerpt_removes_boilerplate(raw, clean):
    assert clean_excerpt(raw) == clean


def test_clean_excerpt_html_removes_the_read_more_link_and_the_footer():
    html = sanitize_html('<p>Alors que personne depuis <a href="https://e.com/a" class="more-link">Lire la suite</a></p>'
                         '<p>The post <a href="https://e.com/a">Titre</a> appeared first on <a href="https://e.com">Site</a>.</p>')
    assert clean_excerpt_html(html) == "<p>Alors que personne depuis…</p>"
    assert clean_excerpt_html("<p>Coupé […]</p>") == "<p>Coupé…</p>"
    assert clean_excerpt_html("<p>Fini. Lire la suite</p>") == "<p>Fini.</p>"
