"""Catalogues read straight from the .po files: French where translated, English ids otherwise."""

from __future__ import annotations

import jinja2

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
