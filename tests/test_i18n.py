"""Catalogues read straight from the .po files: French where translated, English ids otherwise."""

from __future__ import annotations

import jinja2
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.pofile import read_po

from publisher import i18n


def test_french_web_catalogue_translates_and_falls_back_to_the_english_id():
    fr = i18n.translations("web", "fr_FR")
    assert fr.gettext("Unsubscribe") == "Se désabonner"
    assert fr.gettext("A sentence nobody translated") == "A sentence nobody translated"
    assert i18n.translations("web", "fr").gettext("Unsubscribe") == "Se désabonner"  # language alone
    assert "fr_FR" in i18n.available("web")


def test_unknown_or_malformed_locales_show_the_english_ids():
    for locale in ("en_GB", "xx_YY", "not a locale", ""):
        assert i18n.translations("web", locale).gettext("Unsubscribe") == "Unsubscribe"


def test_jinja_templates_translate_through_the_i18n_extension():
    env = jinja2.Environment(extensions=["jinja2.ext.i18n"], autoescape=True)
    env.install_gettext_translations(i18n.translations("web", "fr_FR"), newstyle=True)
    assert env.from_string("<a>{{ _('Unsubscribe') }}</a>").render() == "<a>Se désabonner</a>"


def test_every_message_of_the_web_pages_and_mails_is_in_french_and_the_english_catalogue_exists():
    method_map = [("**.py", "python"), ("templates/**.html", "jinja2"), ("templates/**.txt", "jinja2")]
    options = {"templates/**.html": {"extensions": "jinja2.ext.i18n"}, "templates/**.txt": {"extensions": "jinja2.ext.i18n"}}
    used = {m[2] for m in extract_from_dir(str(i18n.LOCALES.parent / "web"), method_map, options, keywords={**DEFAULT_KEYWORDS, "N_": None})}
    assert len(used) > 40  # the extraction saw the pages, the mails and the messages in the code
    for locale in ("fr_FR", "en_GB"):
        with (i18n.LOCALES / locale / "LC_MESSAGES" / "web.po").open("rb") as fh:
            catalog = read_po(fh)
        assert used <= {m.id for m in catalog if m.id}, f"{locale}: missing {sorted(used - {m.id for m in catalog})}"
        if locale == "fr_FR":
            assert not [m.id for m in catalog if m.id and not m.string], "untranslated French messages"
    fr = i18n.translations("web", "fr_FR")
    assert fr.gettext("Confirm my subscription") == "Confirmer mon abonnement"
    assert i18n.translations("web", "en_GB").gettext("Confirm my subscription") == "Confirm my subscription"
