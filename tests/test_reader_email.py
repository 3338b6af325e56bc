"""The email a reader sees (issue 13): the sample campaigns on a phone without <style>, SpamAssassin, the Nu
HTML checker, an English campaign without French words, French typography, and the footer.

Real parts only: `publisher` subprocesses on a copy of the project, headless Chromium, SpamAssassin with
local rules, the Nu HTML checker (vnu.jar) on this machine.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import lxml.html
import pytest
from babel.dates import get_day_names, get_month_names
from babel.messages.pofile import read_po

from publisher.channels.email.message import SAMPLE_EMAIL, SAMPLE_NAME
from publisher.i18n import LOCALES
from publisher.render.email import Renderer
from publisher.render.overflow import PHONE_WIDTH, page_widths, without_style
from publisher.render.templates import image_height, typography
from support.browser import chromium, require_chromium, serve
from support.mail_checkers import nu_errors, spam_score
from support.render_samples import article, campaign, edition, settings

NOW = "2026-11-23T10:00:00+01:00"
CAMPAIGNS = ("endurance", "gt", "imsa", "rallycross")
NNBSP = "\u202f"

# What the Nu HTML checker calls an error but email needs (see templates/README.md, "Validation").
EMAIL_NEEDS = {
    # Apple Mail's switch is a bare name; clients look for the name, not a content.
    "Element “meta” is missing one or more of the following attributes: “content”, “property”.":
        '<meta name="x-apple-disable-message-reformatting">',
    # Outlook for Windows shows a display:none preheader unless told mso-hide:all.
    "CSS: “mso-hide”: Property “mso-hide” doesn't exist.": "mso-hide:all on the preheader",
}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """The sample week (2026-W47) fetched and previewed with --strict, as a user would."""
    from conftest import REPO, Project  # the shared project copy, made once for this module
    import shutil

    root = tmp_path_factory.mktemp("reader") / "project"
    root.mkdir()
    shutil.copy(REPO / "settings.toml", root / "settings.toml")
    for folder in ("campaigns", "samples", "templates"):
        shutil.copytree(REPO / folder, root / folder)
    project = Project(root)
    project.cli("--now", NOW, "fetch", check=True)
    proc = project.cli("--now", NOW, "preview", "--strict", timeout=300)
    return project, proc, root / "var" / "preview"


def test_sample_campaigns_need_no_sideways_scroll_at_375px_without_style(bundle):
    require_chromium()
    project, proc, out = bundle
    assert proc.returncode == 0, proc.stdout + proc.stderr  # --strict: the phone check found nothing
    assert "phone layout not checked" not in proc.stdout
    emails = {name: (out / name / "2026-W47" / "email.html").read_text(encoding="utf-8") for name in CAMPAIGNS}
    for name, html in emails.items():
        assert "<style" in html and "<style" not in without_style(html), name
    widths = page_widths(emails)
    assert widths == {name: PHONE_WIDTH for name in CAMPAIGNS}, widths


def test_preview_strict_fails_on_a_fixed_600px_layout(project):
    require_chromium()
    (project.root / "templates" / "email.html").write_text(
        '{% extends "default:email.html" %}{% block intro %}<tr><td><table width="600" style="width:600px">'
        "<tr><td>Large</td></tr></table></td></tr>{% endblock %}\n", encoding="utf-8")
    project.cli("--now", NOW, "fetch", check=True)
    proc = project.cli("--now", NOW, "preview", "--strict", "--campaign", "gt")
    assert proc.returncode == 6, proc.stdout + proc.stderr
    assert "without <style> (SFR, La Poste webmails), a 375 px screen scrolls sideways" in proc.stderr
    page = (project.root / "var" / "preview" / "gt" / "2026-W47" / "index.html").read_text(encoding="utf-8")
    assert "<code>mobile-overflow</code>" in page


def test_preview_shows_a_sample_reader_instead_of_placeholders(bundle):
    _, _, out = bundle
    for name in CAMPAIGNS:
        folder = out / name / "2026-W47"
        sample = (folder / "sample.html").read_text(encoding="utf-8")
        assert "%%" not in sample and SAMPLE_EMAIL in sample
        assert "/newsletter/unsubscribe/preferences?t=EXEMPLE-DE-JETON" in sample
        page = (folder / "index.html").read_text(encoding="utf-8")
        assert "%%" not in page.split('<h2 id="posts">')[0] and SAMPLE_EMAIL in page
        # the bytes that will be sent keep their slots
        assert "%%EMAIL%%" in (folder / "email.html").read_text(encoding="utf-8")
    assert SAMPLE_NAME  # the name slot is filled the same way where a template uses %%NAME%%


@pytest.mark.slow
def test_spamassassin_scores_every_sample_message_below_1(bundle):
    _, _, out = bundle
    for name in CAMPAIGNS:
        score, rules = spam_score((out / name / "2026-W47" / "email.eml").read_bytes())
        assert score < 1, f"{name}: {score} ({rules})"


@pytest.mark.slow
def test_nu_html_checker_finds_no_error_but_the_ones_email_needs(bundle):
    _, _, out = bundle
    files = [out / name / "2026-W47" / "sample.html" for name in CAMPAIGNS]
    errors = nu_errors(files)
    unexpected = [f"{e.get('url', '')}: {e['message']}" for e in errors if e["message"] not in EMAIL_NEEDS]
    assert unexpected == []
    assert {e["message"] for e in errors} <= set(EMAIL_NEEDS)
    assert len({e.get("url") for e in errors}) == len(files)  # every file was checked (each has the meta)


# -- locales -------------------------------------------------------------------------------------------


def _french_words() -> set[str]:
    """Every word of the French catalogue and the French day and month names, folded, that English does not share."""
    with (LOCALES / "fr_FR" / "LC_MESSAGES" / "email.po").open("rb") as fh:
        catalogue = read_po(fh)
    english, french = set(), set()
    for message in catalogue:
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strs = message.string if isinstance(message.string, tuple) else (message.string,)
        english |= {w for text in ids for w in _words(text)}
        french |= {w for text in strs for w in _words(text)}
    french |= {_fold(n) for n in get_day_names(locale="fr_FR").values()}
    french |= {_fold(n) for n in get_month_names(locale="fr_FR").values()}
    french |= {"semaine", "du", "au", "le", "la", "de", "d", "l", "édition", "er"}
    return french - english - {"article", "articles", "num", "title", "url", "name", "email"}


def _fold(text: str) -> str:
    return unicodedata.normalize("NFC", text.casefold()).replace("’", "'")  # accents kept: "à" is not "a"


def _words(text: str) -> set[str]:
    return set(re.findall(r"[^\W\d_]+", _fold(text)))


@pytest.mark.parametrize("schedule", ["monday 08:00", "daily 07:00", "monthly 1 09:00"])
def test_an_en_gb_campaign_has_no_french_word_in_its_stock_text(tmp_path, schedule):
    s = settings(tmp_path, address="1 Example Street, London")
    c = campaign(locale="en_GB", intro="", title="Endurance Weekly", schedule=schedule)
    eid = {"monday 08:00": "2026-W47", "daily 07:00": "2026-11-17", "monthly 1 09:00": "2026-11"}[schedule]
    arts = [article(i, title=f"Toyota wins race {i}", summary="A clean race.", author="John Smith",
                    link=f"https://example.org/race-{i}", id=f"race-{i}") for i in range(3)]
    r = Renderer(s).render(edition(c, arts, s, eid), c)
    visible = lxml.html.document_fromstring(r.html).text_content()
    posts = " ".join(p.text for ps in r.posts.values() for p in ps)
    shown = " ".join((r.subject, r.preheader, visible, r.text, posts))
    french = _french_words()
    found = sorted(w for w in _words(shown) if w in french)
    assert found == [], found
    assert "Top story" in r.html and "Read more" in r.html and "Unsubscribe" in r.text
    assert "Also this week" in r.html or "Also today" in r.html or "Also this month" in r.html
    assert "November" in shown


def test_fr_fr_and_en_gb_catalogues_are_complete():
    with (LOCALES / "fr_FR" / "LC_MESSAGES" / "email.po").open("rb") as fh:
        fr = read_po(fh)
    with (LOCALES / "en_GB" / "LC_MESSAGES" / "email.po").open("rb") as fh:
        en = read_po(fh)
    ids = {m.id for m in fr if m.id}
    assert ids == {m.id for m in en if m.id}
    for catalogue in (fr, en):
        for m in catalogue:
            if m.id:
                strings = m.string if isinstance(m.string, tuple) else (m.string,)
                assert all(strings), (catalogue.locale, m.id)
    # every word the stock templates ask for is in the catalogues
    stock = Path(__file__).resolve().parent.parent / "publisher" / "stock_templates"
    asked = set()
    for path in [*stock.glob("*.html"), *stock.glob("*.txt"), *stock.glob("posts/*.txt")]:
        asked |= set(re.findall(r'_\("([^"]+)"', path.read_text(encoding="utf-8")))
    assert asked and asked <= ids, asked - ids


# -- French typography and content ---------------------------------------------------------------------


def test_french_typography_uses_narrow_no_break_spaces():
    assert typography("Rallycross France : « Une victoire » ! Vraiment ?") == \
        f"Rallycross France{NNBSP}: «{NNBSP}Une victoire{NNBSP}»{NNBSP}! Vraiment{NNBSP}?"
    # nothing is added before a sign glued to the previous character (times, links)
    assert typography("«Serré»; le 10:30 à https://x.org") == f"«{NNBSP}Serré{NNBSP}»; le 10:30 à https://x.org"
    assert typography("a\u00a0: b") == f"a{NNBSP}: b"  # a no-break space becomes the narrow one


def test_a_lone_closing_guillemet_never_wraps_onto_its_own_line(tmp_path):
    s = settings(tmp_path)
    c = campaign()
    title = "FFSA GT : « Tellement facile de commettre une petite erreur »"
    r = Renderer(s).render(edition(c, [article(1, title=title), article(2)], s), c)
    assert f"erreur{NNBSP}»" in r.html and f"«{NNBSP}Tellement" in r.html and f"GT{NNBSP}:" in r.html
    assert " »" not in r.text and f"erreur{NNBSP}»" in r.text
    # the stock words use the typographic apostrophe and the narrow space of the catalogue
    assert "à l’adresse" in r.html and f"Se désinscrire{NNBSP}: %%UNSUBSCRIBE_URL%%" in r.text


def test_sections_read_more_footer_and_preheader(tmp_path):
    s = settings(tmp_path, address="1 place de l’Exemple, 72000 Le Mans")
    c = campaign()
    r = Renderer(s).render(edition(c, [article(i) for i in range(4)], s), c)
    doc = lxml.html.document_fromstring(r.html)
    headings = [h.text_content() for h in doc.find_class("section")]
    assert headings == ["À la une", "Aussi cette semaine"]
    assert "À LA UNE" in r.text and "AUSSI CETTE SEMAINE" in r.text
    more = [a for a in doc.iter("a") if a.text_content() == "Lire la suite"]
    assert len(more) == 4  # one per article
    assert r.text.count("Lire la suite") == 4
    footer = doc.find_class("footer")[0]
    assert "Endurance-Info, 1 place de l’Exemple, 72000 Le Mans" in footer.text_content()
    assert [a.get("href") for a in footer.iter("a")][:2] == ["%%PREFERENCES_URL%%", "%%UNSUBSCRIBE_URL%%"]
    assert "Endurance-Info, 1 place de l’Exemple, 72000 Le Mans" in r.text
    # the preheader is padded so a client shows it alone, not followed by the first words of the body
    pre = doc.find_class("preheader")[0]
    assert pre.text_content().startswith(f"4 articles{NNBSP}: WEC")
    assert pre.text_content().count("\u200c") >= 80 and "display:none" in pre.get("style")
    # dark mode: the client is told, and the dark rules stay in <style>
    assert doc.find(".//meta[@name='color-scheme']").get("content") == "light dark"
    assert "prefers-color-scheme: dark" in doc.find(".//style").text


def test_a_series_label_repeating_the_title_prefix_is_not_printed_twice(tmp_path):
    s = settings(tmp_path)
    c = campaign()
    rx = article(1, title="WEC : la Toyota gagne", categories=("WEC",))
    both = article(2, title="ELMS : Le Castellet", categories=("ELMS", "WEC"))
    r = Renderer(s).render(edition(c, [rx, both], s), c)
    metas = [m.text_content() for m in lxml.html.document_fromstring(r.html).find_class("meta")]
    # the lead (newest) is "ELMS : …" in ELMS and WEC: only WEC is added; "WEC : …" needs no label at all
    assert metas == ["mardi 17 novembre · WEC · Jean Dupont", "mardi 17 novembre"]
    assert "ELMS : Le Castellet".replace(" :", NNBSP + ":") in r.text and "mardi 17 novembre · WEC\n" in r.text


def test_every_image_has_width_and_height_in_its_proportions(tmp_path):
    s = settings(tmp_path, logo="https://www.endurance-info.com/logo.png", logo_width=200, logo_height=50)
    c = campaign()
    wp = "https://www.endurance-info.com/wp-content/uploads/2026/11/photo-1024x683.jpg"
    r = Renderer(s).render(edition(c, [article(1, image=wp), article(2), article(3, image=None)], s), c)
    imgs = lxml.html.document_fromstring(r.html).findall(".//img")
    assert [(i.get("width"), i.get("height")) for i in imgs] == [("200", "50"), ("552", "368"), ("120", "80")]
    assert imgs[0].get("alt") == "Endurance-Info"
    small = wp.replace("1024x683", "218x150")
    r = Renderer(s).render(edition(c, [article(1, image=wp, thumbnail=small), article(2, image=wp)], s), c)  # 2 leads
    imgs = lxml.html.document_fromstring(r.html).findall(".//img")
    assert [(i.get("src"), i.get("width"), i.get("height")) for i in imgs[1:]] == [(wp, "552", "368"), (small, "120", "83")]
    assert image_height("https://x.org/a-696x464.jpg", 120) == 80 and image_height("https://x.org/a-218x150.png", 120) == 83
    assert r.lint == ()


def test_dark_mode_is_not_a_white_block_in_chromium(bundle):
    require_chromium()
    _, _, out = bundle
    with serve(out) as base, chromium() as driver:
        colours = {}
        for scheme in ("light", "dark"):
            driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]})
            driver.get(f"{base}/endurance/2026-W47/sample.html")
            colours[scheme] = driver.execute_script(
                "return [document.querySelector('.wrap'), document.querySelector('.container'),"
                " document.querySelector('.lead-title')].map(e => getComputedStyle(e).backgroundColor + ' ' + getComputedStyle(e).color);")
    assert colours["light"][1].startswith("rgb(255, 255, 255)")
    assert colours["dark"][0].startswith("rgb(17, 17, 17)") and colours["dark"][1].startswith("rgb(28, 28, 28)")
    assert colours["dark"][2].endswith("rgb(238, 238, 238)")  # light text on the dark column
