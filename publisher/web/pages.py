"""The pages and mails of `publisher serve`: Jinja2 templates with English message ids, translated per
locale from publisher/locales/<locale>/LC_MESSAGES/web.po.

Templates live in publisher/web/templates/; a file of the same name in the user's `templates/web/`
folder wins (the layer order of the email templates).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import jinja2

from publisher.config import Settings
from publisher.i18n import translations

STOCK = Path(__file__).resolve().parent / "templates"


def N_(message: str) -> str:
    """Marks an English message id for extraction (pybabel -k N_); translated where it is shown."""
    return message


class Pages:
    """Renders the web templates of one installation, one environment per locale."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.folders = (str(settings.path(settings.publisher.templates) / "web"), str(STOCK))

    def render(self, name: str, locale: str, **values) -> str:
        """The template `name` in `locale`, with the installation's name and the page language."""
        env = _environment(self.folders, locale)
        return env.get_template(name).render(publisher_name=self.settings.publisher.name,
                                             lang=locale.split("_")[0], **values)

    def gettext(self, locale: str, message: str, **values) -> str:
        """One translated message (page titles, mail subjects), %-formatted like Jinja's newstyle gettext."""
        text = translations("web", locale).gettext(message)
        return text % values if values else text

    def consent(self, locale: str) -> tuple[str, str]:
        """(text, version) of the consent sentence shown next to the form's checkbox, in `locale`.

        The version is a hash of the exact text, so the record proves which wording a reader agreed to."""
        text = " ".join(self.render("consent.html", locale).split())
        return text, "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@functools.lru_cache(maxsize=16)
def _environment(folders: tuple[str, ...], locale: str) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(list(folders)), autoescape=jinja2.select_autoescape(
        enabled_extensions=("html",), default_for_string=False, default=False), undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.i18n"], trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.install_gettext_translations(translations("web", locale), newstyle=True)  # type: ignore[attr-defined]
    return env
