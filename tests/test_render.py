"""Rendering on literal articles: escaping, one-line subjects, French dates, UTM, size, CSS inlining."""

from __future__ import annotations

import http.server
import threading
from datetime import date
from urllib.parse import parse_qs, urlsplit

import lxml.html
import pytest

from publisher.errors import ConfigError
from publisher.render.email import Renderer, inline_css
from publisher.render.templates import edition_label
from support.render_samples import article, campaign, edition, settings


def render(tmp_path, articles, **campaign_overrides):
    s = settings(tmp_path)
    c = campaign(**campaign_overrides)
    return Renderer(s).render(edition(c, articles, s), c)


def test_feed_markup_is_escaped_and_unsafe_links_dropped(tmp_path):
    evil = article(1, title='Pilote <script>alert("x")</script> & co', summary='<img src=x onerror="alert(1)"> texte',
                   link="javascript:alert(1)", image="javascript:alert(2)")
    ok = article(2)
    r = render(tmp_path, [evil, ok])
    doc = lxml.html.document_fromstring(r.html)
    assert doc.findall(".//script") == []
    assert "&lt;script&gt;alert" in r.html
    for el in doc.iter():
        if not isinstance(el.tag, str):
            continue
        assert not [a for a in el.attrib if a.lower().startswith("on")], el.attrib
        for attr in ("href", "src"):
            value = el.get(attr)
            if value is not None:
                assert value.startswith(("https://", "http://", "%%UNSUBSCRIBE_URL%%", "%%PREFERENCES_URL%%")), value
    assert "javascript:" not in r.html.lower()
    assert "javascript:" not in r.text.lower()
    # the unsafe article is still listed, just without a link
    assert "Pilote &lt;script&gt;" in r.html


def test_subject_and_preheader_are_one_line_even_with_crlf_in_a_title(tmp_path):
    a = article(1, title="Scoop\r\nBcc: victim@example.org\nX-Evil: 1")
    r = render(tmp_path, [a], subject="{{ edition.lead.title }} – {{ edition_label }}",
               preheader="{{ edition.lead.title }}")
    assert "\r" not in r.subject and "\n" not in r.subject
    assert "\r" not in r.preheader and "\n" not in r.preheader
    assert r.subject.startswith("Scoop Bcc: victim@example.org X-Evil: 1 – semaine du")


def test_subject_is_plain_text_not_html_escaped(tmp_path):
    r = render(tmp_path, [article(1, title="L'ACO & la FIA")], subject="{{ edition.lead.title }}")
    assert r.subject == "L'ACO & la FIA"


def test_french_edition_label_and_dates(tmp_path):
    s = settings(tmp_path)
    c = campaign()
    assert edition_label(edition(c, [], s, "2026-W47"), c) == "semaine du 16 au 22 novembre 2026"
    assert edition_label(edition(c, [], s, "2026-W49"), c) == "semaine du 30 novembre au 6 décembre 2026"
    assert edition_label(edition(c, [], s, "2026-W53"), c) == "semaine du 28 décembre 2026 au 3 janvier 2027"
    y, w, _ = date(2026, 6, 1).isocalendar()  # a Monday: French writes "1er"
    assert edition_label(edition(c, [], s, f"{y}-W{w:02d}"), c) == "semaine du 1er au 7 juin 2026"
    r = render(tmp_path, [article(1)])
    assert r.subject == "Endurance Hebdo – semaine du 16 au 22 novembre 2026"
    assert "mardi 17 novembre" in r.html and "mardi 17 novembre" in r.text


def test_article_links_carry_utm_and_keep_their_own_parameters(tmp_path):
    a = article(1, link="https://www.endurance-info.com/?p=42&utm_source=rss")
    r = render(tmp_path, [a])
    doc = lxml.html.document_fromstring(r.html)
    hrefs = [el.get("href") for el in doc.iter("a") if "p=42" in (el.get("href") or "")]
    assert hrefs
    q = parse_qs(urlsplit(hrefs[0]).query)
    assert q == {"p": ["42"], "utm_source": ["newsletter"], "utm_medium": ["email"],
                 "utm_campaign": ["endurance-2026-W47"]}
    assert "utm_campaign=endurance-2026-W47" in r.text


def test_unsubscribe_placeholder_in_html_and_text(tmp_path):
    r = render(tmp_path, [article(1)])
    assert 'href="%%UNSUBSCRIBE_URL%%"' in r.html
    assert "%%UNSUBSCRIBE_URL%%" in r.text
    assert "%%EMAIL%%" in r.html


def test_feed_text_cannot_smuggle_a_personal_token(tmp_path):
    r = render(tmp_path, [article(1, title="Gagnez %%UNSUBSCRIBE_URL%% et %%EMAIL%%")])
    assert r.html.count("%%UNSUBSCRIBE_URL%%") == 1
    assert r.text.count("%%UNSUBSCRIBE_URL%%") == 1


def test_text_part_comes_from_its_own_template(tmp_path):
    r = render(tmp_path, [article(1), article(2)])
    assert "<" not in r.text.replace("<script", "")
    assert "À LA UNE" in r.text and "AUSSI CETTE SEMAINE" in r.text
    # not escaped (&#39;), with French typography (a narrow no-break space before the colon)
    assert "WEC\u202f: la Toyota n°2 s'impose à Bahreïn" in r.text


def test_max_articles_stays_under_90_kb_and_lints_clean(tmp_path):
    long_title = "Rebondissement : " + "une très longue histoire d'endurance " * 4
    articles = [article(i, title=f"{long_title} n°{i}", summary=" ".join(["Résumé détaillé de la course."] * 40))
                for i in range(40)]
    r = render(tmp_path, articles, max_articles=12)
    assert len(r.edition.articles) == 12
    assert len(r.html.encode("utf-8")) < 90 * 1024
    assert r.lint == ()


def test_layout_is_tables_with_widths_and_alt_text(tmp_path):
    r = render(tmp_path, [article(i) for i in range(5)])
    doc = lxml.html.document_fromstring(r.html)
    imgs = doc.findall(".//img")
    assert len(imgs) == 5
    assert all(img.get("width", "").isdigit() and img.get("alt") for img in imgs)
    assert imgs[0].get("width") == "552" and imgs[1].get("width") == "120"  # lead big, others thumbnails
    assert "flex" not in r.html and "grid" not in r.html


def test_css_inlined_once_with_media_rules_and_important_kept(tmp_path):
    r = render(tmp_path, [article(1), article(2)])
    doc = lxml.html.document_fromstring(r.html)
    styles = [s.text for s in doc.iter("style")]
    assert len(styles) == 1
    assert "@media" in styles[0] and "!important" in styles[0]
    assert ".lead-img" not in styles[0]  # ordinary rules were inlined, not left behind
    container = doc.find_class("container")[0]
    # fluid: the column holds its 600 px only where there is room, with or without the <style>
    assert "width:100%;max-width:600px" in container.get("style").replace(" ", "")


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802
        type(self).hits.append(self.path)
        body = b"body{color:red}"
        self.send_response(200)
        self.send_header("Content-Type", "text/css")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def css_server():
    _Recorder.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.hits
    server.shutdown()
    server.server_close()


def test_premailer_never_fetches_remote_css(tmp_path, css_server):
    base, hits = css_server
    html = (f'<html><head><link rel="stylesheet" href="{base}/remote.css">'
            f'<style>@import url("{base}/imported.css"); p{{color:blue}}</style></head><body><p>x</p></body></html>')
    out = inline_css(html)
    assert "color:blue" in out.replace(" ", "")
    assert "@import" not in out
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "email.html").write_text(
        '{% extends "default:email.html" %}{% block style %}{{ super() }}'
        f'<link rel="stylesheet" href="{base}/template.css">{{% endblock %}}', encoding="utf-8")
    r = render(tmp_path, [article(1)])
    assert hits == []
    assert any(i.code == "css-unsupported" and "external stylesheet" in i.message for i in r.lint)


def test_only_social_channels_get_posts(tmp_path):
    r = render(tmp_path, [article(1), article(2)], channels=("email", "mastodon"))
    assert set(r.posts) == {"mastodon"}
    r = render(tmp_path, [article(1)], channels=("email",))
    assert r.posts == {}


def test_template_typo_is_one_clear_error(tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "email.txt").write_text("{{ edition.nope }}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="email.txt"):
        render(tmp_path, [article(1)])
    with pytest.raises(ConfigError, match="subject"):
        render(tmp_path, [article(1)], subject="{{ edition_lable }}")


def test_french_de_elides_before_a_vowel_or_mute_h():
    from publisher.render.templates import french_de

    assert french_de("Endurance-Info") == "d’Endurance-Info"
    assert french_de("Hebdo Auto") == "d’Hebdo Auto"
    assert french_de("Motorsport") == "de Motorsport"
