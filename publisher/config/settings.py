"""settings.toml, read once into a frozen Settings.

`read_settings(path, channel_tables)` knows nothing of channels: the caller (app.load_settings) passes
each channel's name and settings class, read from the channel registry. Unknown keys, wrong types and
unknown tables fail with one line naming the file and key: `settings.toml: [smtp].port must be an
integer`. Secrets never live in files: `secret(NAME)` reads PUBLISHER_* environment variables only.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, Mapping
from urllib.parse import urlsplit

from publisher.config.schema import (
    DOMAIN,
    check_address,
    check_at_least,
    check_host,
    check_port,
    check_range,
    check_readable_file,
    check_url,
    parse_duration,
    read_table,
    read_toml,
)
from publisher.errors import ConfigError
from publisher.store.backend import is_postgres_url, redact


def secret(name: str) -> str | None:
    """A secret from the environment (PUBLISHER_*), or None. Never read from files, never logged."""
    value = os.environ.get(name)
    return value if value else None


def check_store_url(url: str, where: str, why: str) -> None:
    """A postgresql:// store URL has a host and a database name, and no password (that is PUBLISHER_STORE_PASSWORD)."""
    parts = urlsplit(url)
    if parts.password is not None:
        raise ConfigError(f"{where}: the URL holds a password; {why}",
                          hint="remove it from the URL and set PUBLISHER_STORE_PASSWORD in the environment")
    if not parts.hostname or not parts.path.strip("/"):
        raise ConfigError(f"{where}: {redact(url)} needs a host and a database name",
                          hint="write it as postgresql://user@host:5432/dbname")


# ---------------------------------------------------------------------------------------------
# settings.toml

@dataclass(frozen=True)
class PublisherSettings:
    name: str = "publisher"
    site_url: str = "https://example.org"
    store: str = "var/publisher.sqlite3"  # an SQLite file, or postgresql://user@host:port/dbname
    state_dir: str = ""  # this machine's own files (wire journals); default: the SQLite store's folder, else var
    templates: str = "templates"
    campaigns: str = "campaigns"
    delivery: Literal["outbox", "live"] = "outbox"
    outbox: str = "var/outbox"
    preview_dir: str = "var/preview"
    address: str = ""  # the publisher's postal address, in every email's footer
    logo: str | None = None  # https URL of the logo shown at the top of emails (else the name)
    logo_width: int = 180  # pixels, as shown in the email
    logo_height: int = 40

    def _check(self, where: str) -> None:
        check_url(self.site_url, f"{where}.site_url")
        if is_postgres_url(self.store):
            check_store_url(self.store, f"{where}.store", "files never hold secrets")
        if self.logo is not None:
            check_url(self.logo, f"{where}.logo", "https://example.org/logo.png")
        check_range(self, where, 1, 600, "logo_width", "logo_height")


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
    # live sends: the envelope sender becomes local+TOKEN@domain (VERP), so each bounce names its recipient
    return_path: str | None = None
    feedback_id: str | None = None  # the SenderId of the Feedback-ID header (Gmail); default: the sender's domain
    dkim_key: str | None = None  # PEM private key (RSA-2048 or Ed25519), relative to settings.toml; None: no DKIM
    dkim_selector: str = "publisher"
    dkim_domain: str | None = None  # the d= of the signature; default: the sender's domain

    def _check(self, where: str) -> None:
        # each of these ends up in a mail header: a bad one would be sent silently mangled ("From: not")
        check_address(self.sender, f"{where}.from")
        if self.return_path:
            check_address(self.return_path, f"{where}.return_path")
            if "+" in self.return_path:
                raise ConfigError(f"{where}.return_path must be a plain address like 'bounces@example.org' (publisher adds"
                                  f" '+TOKEN' to it), not {self.return_path!r}")
        if self.feedback_id and not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", self.feedback_id):
            raise ConfigError(f"{where}.feedback_id must be letters, digits, '.', '_' or '-', not {self.feedback_id!r}")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,63}", self.dkim_selector):
            raise ConfigError(f"{where}.dkim_selector must be a DNS label like 'news2026', not {self.dkim_selector!r}")
        if self.dkim_domain and not DOMAIN.match(self.dkim_domain):
            raise ConfigError(f"{where}.dkim_domain must be a domain name like 'example.org', not {self.dkim_domain!r}")
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
class BouncesSettings:
    """The mailbox `publisher bounces` reads (IMAP); the password is $PUBLISHER_BOUNCES_PASSWORD."""

    host: str | None = None  # None: no bounce mailbox
    port: int = 993
    security: Literal["tls", "starttls"] = "tls"
    username: str | None = None
    folder: str = "INBOX"
    processed_folder: str = "publisher-processed"  # understood messages are moved here, never deleted
    soft_limit: int = 3  # soft bounces in distinct editions before an address is suppressed
    ca_file: str | None = None  # as [smtp].ca_file
    timeout: float = 30.0
    every: str = "1h"  # how often `publisher schedule` reads the mailbox

    def _check(self, where: str) -> None:
        if parse_duration(self.every, f"{where}.every") <= timedelta(0):
            raise ConfigError(f"{where}.every must be longer than 0s, not {self.every!r}")
        if self.host is not None:
            check_host(self.host, f"{where}.host")
            if not self.username:
                raise ConfigError(f"{where}.username is required when host is set (the password comes from PUBLISHER_BOUNCES_PASSWORD)")
        check_port(self.port, f"{where}.port")
        check_at_least(self, where, 1, "soft_limit")
        check_at_least(self, where, 0.1, "timeout", meaning=" (seconds)")
        for name in ("folder", "processed_folder"):
            value = getattr(self, name)
            if not value or not value.isprintable() or '"' in value or value == self.folder and name != "folder":
                raise ConfigError(f"{where}.{name}: {value!r} is not a usable folder name")


@dataclass(frozen=True)
class WebhookSettings:
    """ESP webhooks served by `publisher serve` (their passwords and tokens come from PUBLISHER_* variables)."""

    sns_topic_arns: list[str] = field(default_factory=list)  # Amazon SES: the SNS topics we subscribed to
    sendgrid_public_key: str | None = None  # SendGrid's Signed Event Webhook verification key (base64)

    def _check(self, where: str) -> None:
        for arn in self.sns_topic_arns:
            if not re.fullmatch(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}", arn):
                raise ConfigError(f"{where}.sns_topic_arns: {arn!r} is not an SNS topic ARN like"
                                  " 'arn:aws:sns:eu-west-1:123456789012:ses-bounces'")


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
    timeout: float = 10.0  # seconds for a whole request to arrive, and for the answer; slower clients are dropped
    workers: int = 32  # requests handled at once; more wait their turn
    max_connections: int = 1000  # open connections at once; beyond, 503
    max_body: int = 16_384  # bytes of a request body; more gets 413
    locale: str = "fr_FR"  # the pages' language (a campaign's sign-up page uses the campaign's locale)
    public_url: str = ""  # the public base of the pages (links in confirmation mails); default: unsubscribe_url's folder
    allowed_origins: tuple[str, ...] = ()  # sites whose pages may embed the sign-up form (site_url always may)
    forwarded_allow_ips: str = "127.0.0.1"  # proxies whose X-Forwarded-For is believed (your nginx)
    truncate_ip: bool = True  # consent records keep 203.0.113.0 rather than 203.0.113.7
    confirm_within: str = "48h"  # a confirmation link expires after this
    signups_per_ip_per_hour: int = 20
    confirmations_per_address_per_day: int = 3
    welcome: bool = True  # send the welcome mail once a sign-up is confirmed
    archive_url: str = ""  # the web version of a sent edition, "https://example.org/newsletter/archive/{campaign}/{edition}/"
    login_attempts: int = 5  # failed logins in a row before the admin area locks a user out
    lockout: str = "15m"  # how long that lock-out lasts
    session_lifetime: str = "12h"  # an admin session ends this long after its login
    secure_cookies: bool = True  # the session cookie is only sent over HTTPS (false only for a plain-HTTP test set-up)

    def _check(self, where: str) -> None:
        check_port(self.port, f"{where}.port", zero_ok=True)
        check_range(self, where, 0.1, 300, "timeout", meaning=" (seconds)")
        check_range(self, where, 1, 256, "workers", meaning=" (requests at once)")
        check_range(self, where, 1, 100_000, "max_connections")
        check_range(self, where, 1024, 10_000_000, "max_body", meaning=" (bytes)")
        check_at_least(self, where, 0, "signups_per_ip_per_hour", "confirmations_per_address_per_day", meaning=" (0 = no limit)")
        if self.public_url:
            check_url(self.public_url, f"{where}.public_url")
        for i, origin in enumerate(self.allowed_origins):
            check_url(origin, f"{where}.allowed_origins[{i}]")
        for key in ("confirm_within", "lockout", "session_lifetime"):
            if parse_duration(getattr(self, key), f"{where}.{key}") <= timedelta(0):
                raise ConfigError(f"{where}.{key} must be longer than 0s, not {getattr(self, key)!r}")
        check_range(self, where, 1, 1000, "login_attempts")
        if self.archive_url:
            check_url(self.archive_url, f"{where}.archive_url", "https://example.org/newsletter/archive/{campaign}/{edition}/")

    @property
    def confirm_window(self) -> timedelta:
        return parse_duration(self.confirm_within, "[web].confirm_within")


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
    bounces: BouncesSettings = BouncesSettings()
    webhooks: WebhookSettings = WebhookSettings()
    channels: dict[str, Any] = field(default_factory=dict)  # every known channel's table: [x], [mastodon], ...

    def path(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else self.root / p

    @property
    def pages_url(self) -> str:
        """The public URL of `publisher serve`'s pages: [web].public_url, else the folder of [email].unsubscribe_url."""
        if self.web.public_url:
            return self.web.public_url.rstrip("/")
        parts = urlsplit(self.email.unsubscribe_url)
        folder = (parts.path.rstrip("/") or "/unsubscribe").rsplit("/", 1)[0]
        return f"{parts.scheme}://{parts.netloc}".lower() + folder

    @property
    def store_is_postgres(self) -> bool:
        return is_postgres_url(self.publisher.store)

    @property
    def store_path(self) -> Path:
        """The SQLite store's file (an SQLite store only: see store_target)."""
        return self.path(self.publisher.store)

    @property
    def store_target(self) -> str | Path:
        """What Store() opens: the SQLite file's path, or the PostgreSQL URL as written."""
        return self.publisher.store if self.store_is_postgres else self.store_path

    @property
    def store_name(self) -> str:
        """The store for messages: the SQLite file's name, or the URL without a password."""
        return redact(self.publisher.store) if self.store_is_postgres else self.store_path.name

    @property
    def state_dir(self) -> Path:
        """This machine's own files (wire journals): [publisher].state_dir, else the SQLite store's folder, else var."""
        if self.publisher.state_dir:
            return self.path(self.publisher.state_dir)
        return self.root / "var" if self.store_is_postgres else self.store_path.parent


_SETTINGS_TABLES = {
    "publisher": PublisherSettings,
    "feeds": FeedSettings,
    "email": EmailSettings,
    "smtp": SmtpSettings,
    "schedule": ScheduleSettings,
    "web": WebSettings,
    "bounces": BouncesSettings,
    "webhooks": WebhookSettings,
}


def read_settings(path: str | Path, channel_tables: Mapping[str, type]) -> Settings:
    """Read settings.toml into a frozen Settings; `channel_tables` maps each channel to its settings class."""
    path = Path(path)
    shown = path.name if path.parent == Path(".") else str(path)
    data = read_toml(path, shown)
    values: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    known_channels = sorted(channel_tables)
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
            channels[key] = read_table(channel_tables[key], table, where)
        else:
            known = ", ".join(sorted({*_SETTINGS_TABLES, "series", *known_channels}))
            raise ConfigError(f"{shown}: unknown table [{key}] (known tables: {known})")
    for name in known_channels:  # every channel gets its defaults even when its table is absent
        if name in _SETTINGS_TABLES:  # e.g. "email": its table is the top-level [email], read above
            channels[name] = values.get(name) or _SETTINGS_TABLES[name]()
            continue
        channels.setdefault(name, read_table(channel_tables[name], {}, f"{shown}: [{name}]"))
    root = path.resolve().parent
    if "smtp" in values and values["smtp"].ca_file:  # resolved here: the SMTP code only sees [smtp]
        ca_file = root / Path(values["smtp"].ca_file).expanduser()
        check_readable_file(ca_file, f"{shown}: [smtp].ca_file", hint=f"relative paths start from the folder of {shown};"
                            " point it at the relay's CA certificate (PEM), or remove the key to use the system trust store")
        values["smtp"] = dataclasses.replace(values["smtp"], ca_file=str(ca_file))
    if "bounces" in values and values["bounces"].ca_file:
        ca_file = root / Path(values["bounces"].ca_file).expanduser()
        check_readable_file(ca_file, f"{shown}: [bounces].ca_file", hint=f"relative paths start from the folder of {shown};"
                            " point it at the mailbox server's CA certificate (PEM)")
        values["bounces"] = dataclasses.replace(values["bounces"], ca_file=str(ca_file))
    if "email" in values and values["email"].dkim_key:
        key = root / Path(values["email"].dkim_key).expanduser()
        check_readable_file(key, f"{shown}: [email].dkim_key", hint=f"relative paths start from the folder of {shown};"
                            " point it at the PEM private key whose public half is published in DNS")
        values["email"] = dataclasses.replace(values["email"], dkim_key=str(key))
        channels["email"] = values["email"]
    return Settings(root=root, source=shown, channels=channels, **values)
