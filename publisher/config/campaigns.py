"""campaigns/*.toml, each read once into a frozen Campaign checked against the settings.

Unknown series, channels, time zones, locales and schedules fail with one line naming the file and key.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from publisher.config.schema import check_at_least, check_timezone, check_url, parse_duration, read_table, read_toml
from publisher.config.settings import Settings
from publisher.errors import ConfigError


@dataclass(frozen=True)
class UtmSettings:
    source: str = "newsletter"
    medium: str = "email"
    campaign: str = "{campaign}-{edition}"  # {campaign} and {edition} are filled in


@dataclass(frozen=True)
class SocialSettings:
    mode: Literal["lead", "thread", "per_article", "none"] = "lead"
    thread_top: int = 3  # articles in the thread after the lead post (mode = "thread")
    link: Literal["lead_article", "web_version"] = "lead_article"
    web_version_url: str | None = None  # e.g. "https://example.org/newsletter/{campaign}/{edition}"
    visibility: Literal["public", "unlisted", "private", "direct"] = "public"
    language: str = "fr"
    mentions: tuple[str, ...] = ()
    spacing: str = "0s"  # wait between two posts of one account (trickle)
    daily_cap: int = 0  # posts per account per day, 0 = no cap

    def _check(self, where: str) -> None:
        if self.web_version_url is not None:  # unchecked, a typo would silently send the lead article's link
            check_url(self.web_version_url, f"{where}.web_version_url", "https://example.org/newsletter/{campaign}/{edition}")
        parse_duration(self.spacing, f"{where}.spacing")
        check_at_least(self, where, 0, "thread_top")
        check_at_least(self, where, 0, "daily_cap", meaning=" (0 = no cap)")


@dataclass(frozen=True)
class AlertSettings:
    """Per-article alerts (`[alerts]`): an article of the campaign's series matching these rules goes out alone, at once."""

    keywords: tuple[str, ...] = ()  # whole words or phrases in the title (case and accents ignored)
    categories: tuple[str, ...] = ()  # feed <category> values
    channels: tuple[str, ...] = ()  # default: the campaign's channels
    subject: str = "{{ edition.lead.title }}"
    preheader: str = "{{ edition.lead.summary }}"

    @property
    def enabled(self) -> bool:
        return bool(self.keywords or self.categories)


@dataclass(frozen=True)
class SeriesMatch:
    """A campaign's own extra matching rules for one of its series (`[match.NAME]`), added to settings.toml's."""

    categories: tuple[str, ...] = ()
    title_prefixes: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class Campaign:
    name: str
    title: str
    series: tuple[str, ...]
    source: str = ""  # file it came from
    locale: str = "fr_FR"
    timezone: str = "Europe/Paris"
    schedule: str = "monday 08:00"
    channels: tuple[str, ...] = ("email",)
    list_name: str | None = None  # subscriber list; defaults to the campaign name
    min_articles: int = 1
    max_articles: int = 12
    thin_week: Literal["skip", "send"] = "skip"
    subject: str = "{{ campaign.title }} – {{ edition_label }}"
    preheader: str = ('{{ ngettext("%(num)s article: %(title)s", "%(num)s articles: %(title)s",'
                      ' edition.articles | length, num=edition.articles | length | number, title=edition.lead.title) }}')
    intro: str = ""
    templates: str | None = None  # a campaign's own template folder, searched before the user's
    utm: UtmSettings = UtmSettings()
    social: SocialSettings = SocialSettings()
    hashtags: tuple[str, ...] = ()  # added to the series' own hashtags
    match: dict[str, "SeriesMatch"] = field(default_factory=dict, hash=False)  # [match.SERIES] extra rules
    alerts: AlertSettings = AlertSettings()
    approval: Literal["none", "required"] = "none"  # "required": an editor approves each edition in `publisher serve`

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def list(self) -> str:
        return self.list_name or self.name

    @property
    def alert_channels(self) -> tuple[str, ...]:
        """The channels an alert goes out on."""
        return self.alerts.channels or self.channels

    @property
    def cadence(self) -> str:
        """"daily", "weekly" or "monthly", from the schedule."""
        return parse_schedule(self.schedule, f"{self.source or self.name}: schedule").cadence


_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_TIME = r"([01]?\d|2[0-3]):([0-5]\d)"
_WEEKLY = re.compile(rf"^\s*(monday|tuesday|wednesday|thursday|friday|saturday|sunday)\s+{_TIME}\s*$", re.I)
_DAILY = re.compile(rf"^\s*daily\s+{_TIME}\s*$", re.I)
_MONTHLY = re.compile(rf"^\s*monthly\s+(\d{{1,2}})\s+{_TIME}\s*$", re.I)


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class Schedule:
    """A campaign's slot: "daily 07:00", "monday 08:00" (weekly) or "monthly 1 09:00" (day 1 to 28)."""

    cadence: Literal["daily", "weekly", "monthly"]
    hour: int
    minute: int
    weekday: int = 0  # weekly: 0 = Monday
    day: int = 1  # monthly: day of the month


@functools.lru_cache(maxsize=256)  # asked for every slot the scheduler looks at
def parse_schedule(text: str, where: str) -> Schedule:
    """'monday 08:00', 'daily 07:00' or 'monthly 1 09:00' -> Schedule; anything else is one ConfigError line."""
    if m := _WEEKLY.match(text):
        return Schedule("weekly", int(m.group(2)), int(m.group(3)), weekday=_WEEKDAYS.index(m.group(1).lower()))
    if m := _DAILY.match(text):
        return Schedule("daily", int(m.group(1)), int(m.group(2)))
    if (m := _MONTHLY.match(text)) and 1 <= int(m.group(1)) <= 28:  # every month has a 28th
        return Schedule("monthly", int(m.group(2)), int(m.group(3)), day=int(m.group(1)))
    raise ConfigError(f"{where} must look like 'monday 08:00', 'daily 07:00' or 'monthly 1 09:00' (day 1 to 28),"
                      f" not {text!r}")


def load_campaign(path: Path, settings: Settings) -> Campaign:
    """Read one campaign file and check its series, channels, time zone and schedule."""
    shown = _shown(path, settings)
    data = read_toml(path, shown)
    data.setdefault("name", path.stem)
    if "list" in data:
        data["list_name"] = data.pop("list")
    campaign = read_table(Campaign, data, shown)
    campaign = dataclasses.replace(campaign, source=shown)
    check_timezone(campaign.timezone, f"{shown}: timezone")
    parse_schedule(campaign.schedule, f"{shown}: schedule")
    if not campaign.series:
        raise ConfigError(f"{shown}: series must name at least one series")
    for s in campaign.series:
        if s.lower() not in settings.series:
            known = ", ".join(sorted(settings.series)) or "none defined"
            raise ConfigError(f"{shown}: series: unknown series {s!r} (known in {settings.source}: {known})")
    for s in campaign.match:
        if s.lower() not in {x.lower() for x in campaign.series}:
            raise ConfigError(f"{shown}: [match.{s}]: {s!r} is not one of this campaign's series ({', '.join(campaign.series)})")
    known_channels = sorted(settings.channels)  # every known channel has its settings, configured or default
    for ch in campaign.channels:
        if ch not in settings.channels:
            raise ConfigError(f"{shown}: channels: unknown channel {ch!r} (known channels: {', '.join(known_channels)})")
    for ch in campaign.alerts.channels:
        if ch not in campaign.channels:
            raise ConfigError(f"{shown}: alerts.channels: {ch!r} is not one of the campaign's channels ({', '.join(campaign.channels)})")
    if campaign.alerts.channels and not campaign.alerts.enabled:
        raise ConfigError(f"{shown}: [alerts] needs keywords or categories to match articles")
    if not _NAME.match(campaign.name):  # the name becomes folder names (outbox, preview) and ledger keys
        raise ConfigError(f"{shown}: name {campaign.name!r} must be letters, digits, '-' or '_' (e.g. 'endurance')",
                          hint=f"rename the file or set name = \"...\" in {shown}")
    if campaign.min_articles < 0:
        raise ConfigError(f"{shown}: min_articles must be 0 or more, not {campaign.min_articles}")
    if campaign.max_articles < max(1, campaign.min_articles):
        raise ConfigError(f"{shown}: max_articles must be at least 1 and at least min_articles ({campaign.min_articles}),"
                          f" not {campaign.max_articles}")
    if campaign.templates and not settings.path(campaign.templates).is_dir():
        raise ConfigError(f"{shown}: templates: folder {campaign.templates!r} not found (relative to {settings.source})",
                          hint="create it, fix the path, or remove the key to use your templates folder and the stock templates")
    try:
        from babel import Locale  # here, not at the top: `publisher status` should not pay for importing Babel

        Locale.parse(campaign.locale)
    except Exception:
        raise ConfigError(f"{shown}: locale: unknown locale {campaign.locale!r} (e.g. 'fr_FR')") from None
    return dataclasses.replace(campaign, series=tuple(s.lower() for s in campaign.series),
                               match={k.lower(): v for k, v in campaign.match.items()})


def _shown(path: Path, settings: Settings) -> str:
    try:
        return str(path.resolve().relative_to(settings.root))
    except ValueError:
        return str(path)


def load_campaigns(settings: Settings, names: typing.Iterable[str] = ()) -> list[Campaign]:
    """All campaigns in the campaigns folder, or the named ones (unknown names fail)."""
    folder = settings.path(settings.publisher.campaigns)
    if not folder.is_dir():  # a typo in the path must not look like "nothing due"
        raise ConfigError(f"{settings.source}: [publisher].campaigns: folder {settings.publisher.campaigns!r} not found",
                          hint=f"create {folder} with one .toml file per campaign, or fix the path")
    files = sorted(folder.glob("*.toml"))
    campaigns = [load_campaign(f, settings) for f in files]
    by_name = {c.name: c for c in campaigns}
    wanted = list(names)
    for name in wanted:
        if name not in by_name:
            raise ConfigError(f"unknown campaign {name!r} (campaigns in {settings.publisher.campaigns}/: {', '.join(by_name) or 'none'})")
    return [by_name[n] for n in wanted] if wanted else campaigns
