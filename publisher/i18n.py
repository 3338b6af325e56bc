"""Translations of our own words (stock templates, web pages): gettext catalogues read with Babel.

Catalogues live in publisher/locales/<locale>/LC_MESSAGES/<domain>.po, one domain per family of
templates ("email" for the letters and posts, "web" for the pages of `publisher serve`), with English
message ids. They are read from the .po files themselves (no compiled .mo to keep in step), once per
(domain, locale). A locale without a catalogue, or a message without a translation, shows the English
text: never a missing string.

Templates use Jinja2's i18n extension: `{% trans %}Read more{% endtrans %}` or `{{ _("Read more") }}`.
"""

from __future__ import annotations

import functools
import gettext
import io
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALES = Path(__file__).resolve().parent / "locales"


@functools.lru_cache(maxsize=64)
def translations(domain: str, locale: str) -> gettext.NullTranslations:
    """The translations of `domain` into `locale` ("fr_FR", "fr", "en_GB"); English ids when there are none."""
    for name in _candidates(locale):
        path = LOCALES / name / "LC_MESSAGES" / f"{domain}.po"
        if path.is_file():
            with path.open("rb") as fh:
                catalog = read_po(fh, locale=name, domain=domain)
            buffer = io.BytesIO()
            write_mo(buffer, catalog)
            buffer.seek(0)
            return gettext.GNUTranslations(buffer)
    return gettext.NullTranslations()


def available(domain: str) -> list[str]:
    """The locales that have a catalogue for `domain`."""
    return sorted(p.parent.parent.name for p in LOCALES.glob(f"*/LC_MESSAGES/{domain}.po"))


def _candidates(locale: str) -> list[str]:
    """fr_FR -> [fr_FR, fr, other fr_*]; fr -> [fr, fr_*]; an unknown or malformed locale has none."""
    try:
        parsed = Locale.parse(locale.replace("-", "_"))
    except (ValueError, UnknownLocaleError, TypeError):
        return []
    full = f"{parsed.language}_{parsed.territory}" if parsed.territory else parsed.language
    same_language = sorted(p.name for p in LOCALES.glob(f"{parsed.language}_*"))
    return list(dict.fromkeys([full, parsed.language, *same_language]))
