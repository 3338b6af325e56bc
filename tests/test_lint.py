"""Email lint: size, images, CSS mail clients drop, scripts and forms, text part, link schemes."""

from __future__ import annotations

from publisher.render.lint import lint_email


def codes(html, text="texte"):
    return [i.code for i in lint_email(html, text)]


def page(body, head=""):
    return f"<!DOCTYPE html><html><head>{head}</head><body>{body}</body></html>"


def test_clean_email_has_no_issue():
    html = page('<table width="600"><tr><td><img src="https://x.org/a.jpg" width="120" alt="Photo">'
                '<a href="https://x.org/a?utm_source=n">lire</a> <a href="mailto:r@x.org">écrire</a>'
                '<a href="%%UNSUBSCRIBE_URL%%">se désinscrire</a></td></tr></table>',
                "<style>@media (max-width:600px){.c{width:100% !important}}</style>")
    assert lint_email(html, "texte") == ()


def test_size_warning_and_gmail_clip():
    filler = "<p>" + "x" * 1000 + "</p>"
    assert codes(page(filler * 80)) == []
    issues = lint_email(page(filler * 95), "t")
    assert [i.code for i in issues] == ["size"] and "90 KB" in issues[0].message
    issues = lint_email(page(filler * 110), "t")
    assert [i.code for i in issues] == ["size"] and "Gmail clips" in issues[0].message


def test_images_need_width_and_alt():
    assert codes(page('<img src="https://x.org/a.jpg" alt="a">')) == ["img-no-width"]
    assert codes(page('<img src="https://x.org/a.jpg" width="100">')) == ["img-no-alt"]
    assert codes(page('<img src="https://x.org/a.jpg" width="100" alt="">')) == []  # decorative: empty alt is fine


def test_css_that_mail_clients_drop():
    found = lint_email(page('<div style="display:flex">a</div><div style="display: grid">b</div>'
                            '<div style="position:absolute;top:0">c</div>'
                            '<td style="background-image:url(https://x.org/bg.png)">d</td>',
                            '<link rel="stylesheet" href="https://x.org/s.css"><style>@import url(x.css);</style>'), "t")
    messages = " | ".join(i.message for i in found)
    assert {i.code for i in found} == {"css-unsupported"}
    for what in ("display:flex", "display:grid", "position:absolute", "background image", "external stylesheet", "@import"):
        assert what in messages
    assert codes(page('<div style="display:block;position:relative">ok</div>')) == []


def test_scripts_forms_and_missing_text_part():
    assert codes(page('<script>alert(1)</script><form action="https://x.org"><input></form>'), text="  ") == \
        ["text-missing", "script", "form"]


def test_links_must_be_http_or_mailto():
    found = lint_email(page('<a href="javascript:alert(1)">x</a><a href="ftp://x.org/f">y</a>'
                            '<a href="/relative">z</a><img src="data:image/png;base64,AAA" width="1" alt="">'), "t")
    assert [i.code for i in found] == ["link-scheme"] * 4
    assert "javascript:alert(1)" in found[0].message
