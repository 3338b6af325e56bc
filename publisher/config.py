"""Settings and campaigns, read once into frozen values.

`load_settings(path)` reads settings.toml; `load_campaigns(settings)` reads campaigns/*.toml. Unknown
keys, wrong types, unknown series, channels or time zones fail with one line naming the file and key:
`settings.toml: [smtp].port must be an integer`. Secrets never live in files: `secret(NAME)` reads
PUBLISHER_* environment variables only.
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from publisher.errors import ConfigError
from publisher.schema import (DOMAIN, check_address, check_at_least, check_host, check_port, check_range,
                              check_readable_file, check_timezone, check_url, parse_duration, read_table, read_toml)


def secret(name: str) -> str | None:
    """A secret from the environment (PUBLISHER_*), or None. Never read from files, never logged."""
    value = os.environ.get(name)
    return value if value else None


# ---------------------------------------------------------------------------------------------
# settings.toml

@dataclass(frozen=True)
class PublisherSettings:
    name: str = "publisher"
    site_url: str = "https://example.org"
    store: str = "var/publisher.sqlite3"
    templates: str = "templates"
    campaigns: str = "campaigns"
    delivery: Literal["outbox", "live"] = "outbox"
    outbox: str = "var/outbox"
    preview_dir: str = "var/preview"

    def _check(self, where: str) -> None:
        check_url(self.site_url, f"{where}.site_url")


@dataclass(frozen=True)
class FeedSettings:
    sources: tuple[str, ...] = ()
    timeout: float = 20.0
    max_bytes: int = 10_000_000
    user_agent: str = "publisher/0.1 (+https://github.com/publisher-newsletters/publisher)"

    def _check(self, where: str) -> None:
        check_at_least(self, where, 0.1, "timeout", meaning=" (seconds)")
        check_at_least(self, where, 1024, "max_bytes", meaning=" (bytes; the default is 10_000_000)")


@dataclass(frozen=True)
class SeriesSettings:
    label: str
    categories: tuple[str, ...] = ()  # feed <category> values (case- and accent-insensitive)
    title_prefixes: tuple[str, ...] = ()  # e.g. "Rallycross France" matches "Rallycross France : ..."
    keywords: tuple[str, ...] = ()  # whole words anywhere in the title
    aliases: tuple[str, ...] = ()  # other names for the series, matched like categories and keywords
    exclude: tuple[str, ...] = ()  # phrases that never count as a keyword match ("Petit Le Mans")
    hashtags: tuple[str, ...] = ()


@dataclass(frozen=True)
class EmailSettings:
    _toml_names = {"from": "sender"}
    sender: str = "Newsletter <newsletter@example.org>"
    reply_to: str | None = None
    unsubscribe_url: str = "https://example.org/newsletter/unsubscribe"
    unsubscribe_mailto: str | None = None
    list_id_domain: str | None = None  # defaults to the sender's domain

    def _check(self, where: str) -> None:
        # each of these ends up in a mail header: a bad one would be sent silently mangled ("From: not")
        check_address(self.sender, f"{where}.from")
        if self.reply_to:
            check_address(self.reply_to, f"{where}.reply_to")
        if self.unsubscribe_mailto:
            check_address(self.unsubscribe_mailto.removeprefix("mailto:"), f"{where}.unsubscribe_mailto")
        check_url(self.unsubscribe_url, f"{where}.unsubscribe_url")
        if self.list_id_domain and not DOMAIN.match(self.list_id_domain):
            raise ConfigError(f"{where}.list_id_domain must be a domain name like 'example.org', not {self.list_id_domain!r}")


MAX_SMTP_CONNECTIONS = 100


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "localhost"
    port: int = 587
    security: Literal["none", "starttls", "tls"] = "starttls"
    username: str | None = None
    connections: int = 4
    rate_per_second: float = 0.0  # 0 = no limit
    rate_per_hour: int = 0  # 0 = no limit
    timeout: float = 30.0
    retry_backoff: float = 30.0  # seconds before the first retry of a 4xx; doubles per attempt (max 1 h)
    retry_wait: float = 300.0  # a send waits for due retries this long; later ones are left for the next run
    max_attempts: int = 8  # a recipient still refused with 4xx after this many attempts is marked failed
    # PEM file of the CA that signed the relay's certificate (a private CA); relative to settings.toml.
    # None: the system trust store. Either way the certificate and host name are always verified.
    ca_file: str | None = None
    helo_name: str | None = None  # the name we give in EHLO; None: this machine's fully qualified name

    def _check(self, where: str) -> None:
        check_host(self.host, f"{where}.host")
        if self.helo_name is not None:  # sent as the EHLO argument: a space or line break breaks the session
            check_host(self.helo_name, f"{where}.helo_name", address_literal=True)
        check_port(self.port, f"{where}.port")
        # 0 would start no connection and wait forever; hundreds are a typo a relay reads as an attack
        # (Postfix lets one client open 50 at a time) and cost a thread and a socket each
        check_range(self, where, 1, MAX_SMTP_CONNECTIONS, "connections", meaning=" (parallel SMTP connections)")
        check_at_least(self, where, 1, "max_attempts")
        check_at_least(self, where, 0, "rate_per_second", "rate_per_hour", meaning=" (0 = no limit)")
        check_at_least(self, where, 0, "retry_backoff", "retry_wait", meaning=" (seconds)")
        check_at_least(self, where, 0.1, "timeout", meaning=" (seconds)")


@dataclass(frozen=True)
class ScheduleSettings:
    fetch_every: str = "1h"
    lateness: str = "24h"
    tick: str = "60s"

    def _check(self, where: str) -> None:
        for name in ("fetch_every", "lateness", "tick"):
            parse_duration(getattr(self, name), f"{where}.{name}")
        for name in ("fetch_every", "tick"):  # zero would make the scheduler loop hot
            if parse_duration(getattr(self, name), name) <= timedelta(0):
                raise ConfigError(f"{where}.{name} must be longer than 0s, not {getattr(self, name)!r}")

    @property
    def fetch_interval(self) -> timedelta:
        return parse_duration(self.fetch_every, "[schedule].fetch_every")

    @property
    def lateness_window(self) -> timedelta:
        return parse_duration(self.lateness, "[schedule].lateness")


@dataclass(frozen=True)
class WebSettings:
    host: str = "127.0.0.1"
    port: int = 8025
    timeout: float = 10.0  # seconds for a whole request to arrive; slower clients are dropped
    workers: int = 32  # connections served at once; more wait in the listen backlog

    def _check(self, where: str) -> None:
        check_port(self.port, f"{where}.port", zero_ok=True)
        check_range(self, where, 0.1, 300, "timeout", meaning=" (seconds)")
        check_range(self, where, 1, 256, "workers", meaning=" (threads)")


@dataclass(frozen=True)
class Settings:
    """Everything in settings.toml. Paths are resolved against the settings file's folder."""

    root: Path
    source: str  # the file it came from, for error messages
    publisher: PublisherSettings = PublisherSettings()
    feeds: FeedSettings = FeedSettings()
    series: dict[str, SeriesSettings] = field(default_factory=dict)
    email: EmailSettings = EmailSettings()
    smtp: SmtpSettings = SmtpSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    web: WebSettings = WebSettings()
    channels: dict[str, Any] = field(default_factory=dict)  # [x], [mastodon], ... read by each channel

    def path(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else self.root / p

    @property
    def store_path(self) -> Path:
        return self.path(self.publisher.store)


_SETTINGS_TABLES = {
    "publisher": PublisherSettings,
    "feeds": FeedSettings,
    "email": EmailSettings,
    "smtp": SmtpSettings,
    "schedule": ScheduleSettings,
    "web": WebSettings,
}


def load_settings(path: str | Path = "settings.toml") -> Settings:
    """Read settings.toml into a frozen Settings; channel tables are validated by their channel."""
    from publisher.channels import registry  # late: channels import config

    path = Path(path)
    shown = path.name if path.parent == Path(".") else str(path)
    data = read_toml(path, shown)
    values: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    known_channels = registry.names()
    for key, table in data.items():
        where = f"{shown}: [{key}]"
        if key in _SETTINGS_TABLES:
            if not isinstance(table, dict):
                raise ConfigError(f"{where} must be a table")
            values[key] = read_table(_SETTINGS_TABLES[key], table, where)
        elif key == "series":
            if not isinstance(table, dict):
                raise ConfigError(f"{where} must be a table of series")
            values["series"] = {
                name.lower(): read_table(SeriesSettings, t if isinstance(t, dict) else {"label": t}, f"{shown}: [series.{name}]")
                for name, t in table.items()
            }
        elif key in known_channels:
            if not isinstance(table, dict):
                raise ConfigError(f"{where} must be a table")
            channels[key] = read_table(registry.get(key).settings_cls, table, where)
        else:
            known = ", ".join(sorted({*_SETTINGS_TABLES, "series", *known_channels}))
            raise ConfigError(f"{shown}: unknown table [{key}] (known tables: {known})")
    for name in known_channels:  # every channel gets its defaults even when its table is absent
        if name in _SETTINGS_TABLES:  # e.g. "email": its table is the top-level [email], read above
            channels[name] = values.get(name) or _SETTINGS_TABLES[name]()
            continue
        channels.setdefault(name, read_table(registry.get(name).settings_cls, {}, f"{shown}: [{name}]"))
    root = path.resolve().parent
    if "smtp" in values and values["smtp"].ca_file:  # resolved here: the SMTP code only sees [smtp]
        ca_file = root / Path(values["smtp"].ca_file).expanduser()
        check_readable_file(ca_file, f"{shown}: [smtp].ca_file", hint=f"relative paths start from the folder of {shown};"
                            " point it at the relay's CA certificate (PEM), or remove the key to use the system trust store")
        values["smtp"] = dataclasses.replace(values["smtp"], ca_file=str(ca_file))
    return Settings(root=root, source=shown, channels=channels, **values)


# ---------------------------------------------------------------------------------------------
# campaigns/*.toml


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
    preheader: str = "{{ edition.articles | length }} articles cette semaine : {{ edition.lead.title }}"
    intro: str = ""
    templates: str | None = None  # a campaign's own template folder, searched before the user's
    utm: UtmSettings = UtmSettings()
    social: SocialSettings = SocialSettings()
    hashtags: tuple[str, ...] = ()  # added to the series' own hashtags
    match: dict[str, "SeriesMatch"] = field(default_factory=dict, hash=False)  # [match.SERIES] extra rules

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def list(self) -> str:
        return self.list_name or self.name


_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_SCHEDULE = re.compile(r"^\s*(monday|tuesday|wednesday|thursday|friday|saturday|sunday)\s+([01]?\d|2[0-3]):([0-5]\d)\s*$", re.I)


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def parse_schedule(text: str, where: str) -> tuple[int, int, int]:
    """'monday 08:00' -> (weekday 0-6, hour, minute)."""
    m = _SCHEDULE.match(text)
    if not m:
        raise ConfigError(f"{where} must look like 'monday 08:00', not {text!r}")
    return _WEEKDAYS.index(m.group(1).lower()), int(m.group(2)), int(m.group(3))


def load_campaign(path: Path, settings: Settings) -> Campaign:
    """Read one campaign file and check its series, channels, time zone and schedule."""
    from publisher.channels import registry

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
    for ch in campaign.channels:
        if ch not in registry.names():
            raise ConfigError(f"{shown}: channels: unknown channel {ch!r} (known channels: {', '.join(registry.names())})")
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
        from babel import Locale

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
