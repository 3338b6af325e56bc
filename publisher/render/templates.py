"""The templates: layered lookup, Jinja's immutable sandbox, and what every template receives.

Templates are looked up in layers, first match wins (like Pelican and datasette):

    1. the campaign's own folder (`templates = "..."` in its campaigns/*.toml), if set
    2. the user's folder, `[publisher].templates` in settings.toml (default `templates/`)
    3. the stock templates shipped in `publisher/stock_templates/`

A user's template can still extend the stock one it replaces with the `default:` prefix:
`{% extends "default:email.html" %}`. HTML templates are autoescaped; `.txt` templates and the
campaign's subject/preheader strings are plain text (escaping `&` in a text part would be a bug), and
every feed string reaching them is made one line. `StrictUndefined` everywhere: a typo in a template
is an error, not an empty string.

Every template (files and the campaign's subject/preheader strings) runs in Jinja's immutable sandbox:
a campaign file or a template override is text anyone with access to the folder may edit, and without
the sandbox `{{ cycler.__init__.__globals__.os.environ }}` would put the SMTP password in a subject.
An attribute starting with `_`, Python internals (frames, code, `mro`) and calls that change a list or
dict given to the template are refused with a `SecurityError`, which becomes one error line.
"""

from __future__ import annotations

import contextlib
import functools
import re
import traceback
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import jinja2
import jinja2.sandbox
from babel.dates import format_date
from babel.numbers import format_decimal

from publisher.config import Campaign, Settings
from publisher.editions import is_alert_id
from publisher.errors import ConfigError
from publisher.i18n import translations
from publisher.text import one_line, safe_url
from publisher.models import EMAIL_TOKEN, PREFERENCES_TOKEN, UNSUBSCRIBE_TOKEN, Article, Edition

STOCK_TEMPLATES = Path(__file__).resolve().parent.parent / "stock_templates"
LEAD_SUMMARY_CHARS = 420
ITEM_SUMMARY_CHARS = 220
ELLIPSIS = "…"


# -- the template environment --------------------------------------------------------------------


def environment(settings: Settings, campaign: Campaign | None = None) -> jinja2.Environment:
    """The (shared) Jinja environment for a campaign's template layers, speaking the campaign's locale."""
    return make_environment(template_folders(settings, campaign), campaign.locale if campaign is not None else "fr_FR")


def template_folders(settings: Settings, campaign: Campaign | None = None) -> list[Path]:
    """The template layers for a campaign, first match wins: campaign folder, user folder, stock."""
    folders = []
    if campaign is not None and campaign.templates:
        folders.append(settings.path(campaign.templates))
    folders.append(settings.path(settings.publisher.templates))
    folders.append(STOCK_TEMPLATES)
    return folders


class _Sandbox(jinja2.sandbox.ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, refusing at once rather than handing back an undefined value.

    Jinja returns an undefined for an unsafe attribute, so `{{ x.__class__ | default("") }}` or an
    `is defined` test would pass quietly; here any attempt stops the render with its reason.
    """

    def unsafe_undefined(self, obj: object, attribute: str) -> jinja2.Undefined:
        owner = f"class {obj.__name__!r}" if isinstance(obj, type) else f"a {type(obj).__name__!r} object"
        raise jinja2.sandbox.SecurityError(f"access to attribute {attribute!r} of {owner}")


def make_environment(folders: list[Path], locale: str = "fr_FR") -> jinja2.Environment:
    """A Jinja environment over the given layers plus the `default:` prefix for the stock layer.

    Shared per set of folders and locale, so templates compile once per process; Jinja still reloads a
    template whose file changed (auto_reload), so a long-running scheduler sees edited overrides. The
    stock words come from the "email" gettext catalogue of `locale` (`{{ _("Read more") }}`).
    """
    return _environment(tuple(str(f) for f in folders), locale)


@functools.lru_cache(maxsize=32)
def _environment(folders: tuple[str, ...], locale: str) -> jinja2.Environment:
    stock = jinja2.FileSystemLoader(str(STOCK_TEMPLATES))
    loader = jinja2.ChoiceLoader([
        jinja2.FileSystemLoader(list(folders)),
        jinja2.PrefixLoader({"default": stock}, delimiter=":"),
    ])
    env = _Sandbox(
        loader=loader,
        # HTML is escaped; text templates and subject strings are not (they are not HTML).
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "htm", "xml"),
                                            default_for_string=False, default=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_translations(translations("email", locale), newstyle=True)
    env.filters["one_line"] = one_line
    env.filters["de"] = french_de
    env.filters["number"] = functools.partial(_number, locale=locale)
    env.filters["typo"] = typography if locale.lower().startswith("fr") else _same
    return env


def _number(value: float, locale: str) -> str:
    return format_decimal(value, locale=locale)


def _same(text: str) -> str:
    return text


NNBSP = "\u202f"  # narrow no-break space: French puts it before ; : ! ? and inside « »
_BEFORE_PUNCT = re.compile(r"[ \u00a0\u2009\u202f]+([:;!?»])")
_AFTER_GUILLEMET = re.compile(r"«[ \u00a0\u2009\u202f]*")
_BARE_CLOSE = re.compile(r"(?<=[^\s\u202f])»")


def typography(text: str) -> str:
    """French typography on plain text: a narrow no-break space before : ; ! ? and » and after «, in
    place of any space there, so a lone "»" or "?" never wraps onto its own line. Nothing is added
    before a colon glued to a word ("https:", "10:30")."""
    if not text:
        return text
    text = _BEFORE_PUNCT.sub(NNBSP + r"\1", text)
    text = _AFTER_GUILLEMET.sub("«" + NNBSP, text)
    return _BARE_CLOSE.sub(NNBSP + "»", text)


def french_de(name: str) -> str:
    """French "de" before a name, elided before a vowel or a mute h: "d’Endurance-Info", "de Motorsport"."""
    first = name.strip()[:1].casefold()
    return f"d’{name}" if first and first in "aeiouyhàâäéèêëîïôöùûü" else f"de {name}"


# -- derived values: dates and links ---------------------------------------------------------------


def _day(d: date, locale: str, with_month: bool, with_year: bool) -> str:
    fmt = "d" + (" MMMM" if with_month else "") + (" y" if with_year else "")
    text = format_date(d, fmt, locale=locale)
    if locale.lower().startswith("fr") and d.day == 1:  # French writes "1er décembre"
        text = "1er" + text[1:]
    return text


def edition_label(edition: Edition, campaign: Campaign) -> str:
    """'semaine du 16 au 22 novembre 2026', 'lundi 23 novembre 2026', 'novembre 2026' (French), or
    'week of 16 – 22 November 2026', 'Monday 23 November 2026', 'November 2026' otherwise."""
    first = edition.window_start.astimezone(campaign.tz).date()
    last = (edition.window_end.astimezone(campaign.tz) - timedelta(seconds=1)).date()
    french = campaign.locale.lower().startswith("fr")
    if first == last:  # a daily edition
        text = format_date(first, "EEEE d MMMM y", locale=campaign.locale)
        return text.replace(" 1 ", " 1er ", 1) if french and first.day == 1 else text
    if first.day == 1 and (last + timedelta(days=1)).day == 1:  # a monthly edition
        return format_date(first, "LLLL y", locale=campaign.locale)
    same_year, same_month = first.year == last.year, (first.year, first.month) == (last.year, last.month)
    start = _day(first, campaign.locale, with_month=not same_month, with_year=not same_year)
    end = _day(last, campaign.locale, with_month=True, with_year=True)
    if french:
        return f"semaine du {start} au {end}"
    return f"week of {start} – {end}"


def with_utm(url: str, campaign: Campaign, edition: Edition, *, source: str | None = None,
             medium: str | None = None) -> str:
    """`url` with utm_source/utm_medium/utm_campaign set (other query parameters kept)."""
    parts = urlsplit(url)
    name = campaign.utm.campaign.replace("{campaign}", campaign.name).replace("{edition}", edition.id)
    utm = {"utm_source": source or campaign.utm.source, "utm_medium": medium or campaign.utm.medium,
           "utm_campaign": name}
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in utm]
    query += [(k, v) for k, v in utm.items() if v]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def defuse(text: str) -> str:
    """Feed text must never contain a personal token the sender would fill in (%%EMAIL%%, ...)."""
    while "%%" in text:
        text = text.replace("%%", "%")
    return text


@dataclass(frozen=True)
class Item:
    """An article as templates see it: clean one-line title, safe links with UTM, local date."""

    article: Article
    title: str
    url: str | None  # http(s) link with UTM, or None when the feed's link was not safe
    plain_url: str | None  # the same link without UTM (for social cards and display)
    image: str | None
    thumb: str | None  # a small size of `image` when the feed offers one (WordPress 218x150), else `image`
    image_width: int  # pixels, for the width="" and height="" every image needs (Outlook, no layout shift)
    image_height: int
    summary: str  # plain text, shortened at a word boundary for the email
    full_summary: str
    date_label: str  # "lundi 16 novembre"
    series: tuple[str, ...]  # series labels, e.g. ("WEC", "24 Heures du Mans")
    series_names: tuple[str, ...]
    author: str | None
    is_lead: bool


def make_items(edition: Edition, campaign: Campaign, settings: Settings, *, utm_source: str | None = None,
               utm_medium: str | None = None) -> list[Item]:
    """The edition's articles as template-ready items (escaping happens in the templates)."""
    items = []
    for i, a in enumerate(edition.articles):
        link = safe_url(a.link)
        image = safe_url(a.image) if a.image else None
        # the list shows the feed's small size of the image when it offers one, not the 1024 px file
        thumb = (safe_url(a.thumbnail) if a.thumbnail else None) or image
        summary = defuse(one_line(a.summary))
        names = edition.series.get(a.id, ())
        labels = tuple(settings.series[n].label if n in settings.series else n for n in names)
        title = defuse(one_line(a.title))
        # "Rallycross France : …" needs no "Rallycross France" badge under it
        labels = tuple(label for label in labels if not _prefix_of(title, label))
        width = LEAD_IMAGE_WIDTH if i == 0 else THUMB_WIDTH
        items.append(Item(
            article=a,
            title=title,
            url=with_utm(link, campaign, edition, source=utm_source, medium=utm_medium) if link else None,
            plain_url=link,
            image=image,
            thumb=thumb,
            image_width=width,
            image_height=image_height(image if i == 0 else thumb, width),
            summary=shorten(summary, LEAD_SUMMARY_CHARS if i == 0 else ITEM_SUMMARY_CHARS),
            full_summary=summary,
            date_label=format_date(a.published.astimezone(campaign.tz).date(), "EEEE d MMMM", locale=campaign.locale),
            series=labels,
            series_names=names,
            author=defuse(one_line(a.author)) if a.author else None,
            is_lead=i == 0,
        ))
    return items


LEAD_IMAGE_WIDTH = 552  # the 600 px column less its padding
THUMB_WIDTH = 120
_WP_SIZE = re.compile(r"-(\d{2,5})x(\d{2,5})\.(?:jpe?g|png|gif|webp|avif)(?:$|[?#])", re.I)


def image_height(url: str | None, width: int) -> int:
    """The height of `url` shown `width` pixels wide: from a WordPress "-1024x683" size in its name, else 3:2
    (the shape of press photos; CSS height:auto corrects it where CSS applies)."""
    m = _WP_SIZE.search(url or "")
    w, h = (int(m.group(1)), int(m.group(2))) if m else (3, 2)
    return max(1, round(width * h / w))


def _prefix_of(title: str, label: str) -> bool:
    """Whether `title` starts with the series `label` followed by a separator ("Rallycross France : …")."""
    if not title[:len(label)].casefold() == label.casefold():
        return False
    rest = title[len(label):].lstrip(" \u00a0\u202f")
    return rest[:1] in (":", "(", "-", "–", "|")


def base_context(edition: Edition, campaign: Campaign, settings: Settings) -> dict:
    """What every template gets: the edition, the campaign and derived values, never raw settings."""
    site = safe_url(settings.publisher.site_url)
    web = None
    pattern = campaign.social.web_version_url or settings.web.archive_url  # the campaign's own, else the archive's
    if pattern:
        web = safe_url(pattern.replace("{campaign}", campaign.name)
                       .replace("{edition}", edition.id))
    return {
        "edition": edition,
        "campaign": campaign,
        "edition_label": edition_label(edition, campaign),
        "publisher_name": settings.publisher.name,
        "site_url": with_utm(site, campaign, edition) if site else None,
        "web_version_url": web,
        "intro": campaign.intro,
        "lang": campaign.locale.split("_")[0],
        "unsubscribe_url": UNSUBSCRIBE_TOKEN,
        "preferences_url": PREFERENCES_TOKEN,
        "email_address": EMAIL_TOKEN,
        "from_publisher": french_de(settings.publisher.name) if campaign.locale.lower().startswith("fr")
        else translations("email", campaign.locale).gettext("from %(name)s") % {"name": settings.publisher.name},
        "postal_address": settings.publisher.address,
        "logo": _logo(settings),
        "cadence": campaign.cadence,
        "alert": is_alert_id(edition.id),
        "week_start": format_date(edition.window_start.astimezone(campaign.tz).date(), "d MMMM y", locale=campaign.locale),
    }


@dataclass(frozen=True)
class Logo:
    url: str
    width: int
    height: int


def _logo(settings: Settings) -> Logo | None:
    p = settings.publisher
    url = safe_url(p.logo) if p.logo else None
    return Logo(url, p.logo_width, p.logo_height) if url else None


@functools.lru_cache(maxsize=256)
def string_template(env: jinja2.Environment, source: str) -> jinja2.Template:
    return env.from_string(source)


def render_template(env: jinja2.Environment, name: str, ctx: dict, campaign: Campaign) -> str:
    """Render one template file; template mistakes become one-line ConfigErrors naming the file."""
    with template_errors(env, name, campaign):
        return env.get_template(name).render(ctx)


@contextlib.contextmanager
def template_errors(env: jinja2.Environment, name: str, campaign: Campaign) -> Iterator[None]:
    """Turn any mistake in template `name` (syntax, undefined name, `1 / 0`, bad bytes) into one ConfigError line."""
    hint = f"fix it, then rerun 'publisher preview --campaign {campaign.name}'"
    try:
        yield
    except jinja2.TemplateNotFound as exc:
        raise ConfigError(f"template {exc.name!r} not found (looked in the campaign folder, your templates "
                          f"folder and the stock templates)", hint="check the name in your {% extends %} or {% include %}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"template {_where(exc.filename or name, exc.lineno)}: {describe(exc)}", hint=hint) from None
    except UnicodeDecodeError as exc:  # Jinja reads template files as UTF-8
        raise ConfigError(f"template {_source_path(env, name)}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset"
                          f" {exc.start})", hint="save it as UTF-8, then rerun 'publisher preview --campaign " + campaign.name + "'") from None
    except RecursionError:
        raise ConfigError(f"template {_source_path(env, name)}: extends or includes itself, directly or through another template",
                          hint="a user template that replaces a stock one extends it as \"default:NAME\"; " + hint) from None
    except (jinja2.TemplateError, *USER_ERRORS) as exc:  # undefined names, `1 / 0`, a bad filter argument
        raise ConfigError(f"template {_template_line(exc, name)}: {describe(exc)}", hint=hint) from None


def _source_path(env: jinja2.Environment, name: str) -> str:
    """The file that template `name` comes from in `env`'s layers (first match wins), for messages."""
    loaders = getattr(env.loader, "loaders", [env.loader])
    for loader in loaders:
        for folder in getattr(loader, "searchpath", []):
            if (Path(folder) / name).is_file():
                return str(Path(folder) / name)
    return name


# What an expression in a user's template can raise at render time; anything else is our bug.
USER_ERRORS = (ArithmeticError, LookupError, TypeError, ValueError, AttributeError)


def _where(filename: str, line: int | None) -> str:
    return f"{filename}{f' line {line}' if line else ''}"


def _template_line(exc: Exception, name: str) -> str:
    """The template file and line a render-time error came from; Jinja maps its frames to them."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.endswith((".html", ".txt", ".htm", ".xml")) and Path(frame.filename).is_file():
            return _where(frame.filename, frame.lineno)
    return name


def describe(exc: Exception) -> str:
    text = one_line(str(exc))
    if isinstance(exc, jinja2.sandbox.SecurityError):
        return (f"refused by the template sandbox: {text.rstrip('.')} (templates cannot reach attributes"
                f" starting with '_', Python internals or the environment)")
    if isinstance(exc, jinja2.TemplateError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def shorten(text: str, max_chars: int) -> str:
    """`text` cut at a word boundary to at most `max_chars` characters, ending with "…"; never mid-word."""
    text = text.strip()
    if len(text) <= max_chars:
        return text
    cut = text[: max(0, max_chars - len(ELLIPSIS)) + 1]
    space = cut.rfind(" ")
    if space <= 0:
        return ""
    return cut[:space].rstrip(" ,;:.–—-") + ELLIPSIS
