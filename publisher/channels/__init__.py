"""Channels: where a rendered edition goes (email, the social networks, outbox).

Every channel, built-in or plugin, goes through one registry. A channel is a module in this package
(or a plugin exposing the entry point group `publisher.channels`) that defines

    SPEC = ChannelSpec(name="mastodon", kind="social", settings_cls=MastodonSettings, factory=make)

`settings_cls` is a frozen dataclass read from the `[mastodon]` table of settings.toml (unknown keys
fail); `factory(settings, channel_settings, ctx)` returns an object with `dispatch(rendered, campaign)`,
or raises ChannelDisabled with the reason (e.g. a missing credential) so the other channels still run.
A social channel also declares its `posts=PostRules(...)`: how its network counts a post, its limit,
whether the first post carries a link card. Rendering asks the registry for these rules; adding a
channel means adding a module here (or a package, like email/), and nothing else names a network.

Loading the registry imports every channel module, so a channel module imports its network's library
(tweepy, Mastodon.py, atproto, twitter-text) only where it is used: `publisher status` loads the
registry to read settings.toml and should not pay for those.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Literal, Protocol

if TYPE_CHECKING:
    from publisher.config import Campaign, Settings
    from publisher.models import RenderedEdition
    from publisher.progress import Progress
    from publisher.store.ledger import Ledger


class ChannelDisabled(Exception):
    """Raised by a factory when the channel cannot run (missing credentials, ...): reported, not fatal."""


@dataclass
class DispatchContext:
    """What a channel may touch: the ledger, the clock value of this run, progress, a stop flag."""

    settings: "Settings"
    ledger: "Ledger"
    now: datetime
    progress: "Progress"
    stop: threading.Event = field(default_factory=threading.Event)  # set on SIGTERM: finish in-flight, stop
    outbox: Any = None  # a pathlib.Path when settings.publisher.delivery == "outbox"
    resend_unknown: bool = False  # the user said: resend rows whose outcome is unknown
    # the Date header of a live send: the moment a copy leaves, from the system clock even under --now
    wall_clock: Callable[[], datetime] = field(default=lambda: system_now())


def system_now() -> datetime:
    """The system clock: only for the Date header of a live send, which says when the copy left (never --now)."""
    return datetime.now(timezone.utc)


@dataclass
class DispatchReport:
    """What one channel did for one edition."""

    channel: str
    edition_key: str
    sent: int = 0
    found: int = 0  # recovered: the network already had the post (an earlier run's request took effect)
    skipped: int = 0  # already sent by an earlier run
    failed: int = 0
    unknown: int = 0
    pending: int = 0  # left for a later run (stopped, rate limited, daily cap)
    messages: list[str] = field(default_factory=list)  # one line each, for the user
    error: str | None = None  # what stopped the channel early (a full disk), one line for the user

    @property
    def trouble(self) -> bool:
        """Something the user must look at: failed, unknown or pending deliveries, or an error."""
        return bool(self.failed or self.unknown or self.pending or self.error)

    def line(self) -> str:
        parts = [f"{self.sent} sent"]
        if self.found:
            parts.append(f"{self.found} found already posted")
        parts.append(f"{self.skipped} already sent")
        for name in ("failed", "unknown", "pending"):
            if getattr(self, name):
                parts.append(f"{getattr(self, name)} {name}")
        return f"{self.channel} {self.edition_key}: " + ", ".join(parts)


class Channel(Protocol):
    name: str

    def dispatch(self, rendered: "RenderedEdition", campaign: "Campaign") -> DispatchReport: ...


@dataclass(frozen=True)
class PostRules:
    """What a social network makes of a post, declared by its channel module and read by render/posts.py."""

    length: Callable[[str], int]  # the network's own count of a post's text (links, emoji, ...)
    limit: int  # the most it takes
    limit_setting: str | None = None  # a key of the channel's settings that overrides `limit` when above 0
    card: bool = False  # the first post of a thread carries a link card (title, description, thumbnail)
    # How a thread ("thread" mode) appears on the network: "replies", each post answering the one before;
    # "carousel", one post whose images are the thread's articles (Instagram); "lead", the lead post only
    # (a page feed has no threads).
    thread: Literal["replies", "carousel", "lead"] = "replies"
    max_hashtags: int = 0  # the most hashtags a post may carry (0: no rule); extra ones are dropped from the end
    max_images: int = 1  # images one post can carry (a carousel's items)
    # How the network shows a link written in the text, when it shortens it (Bluesky's app shows
    # "host/path..." and keeps the full URL in a link facet): the post's text holds this form, its
    # `links` the full URLs, and the length is counted on the text as shown.
    link_text: Callable[[str], str] | None = None

    def limit_in(self, channel_settings: Any) -> int:
        """The limit, or the channel settings' override of it (e.g. [mastodon].max_characters)."""
        configured = getattr(channel_settings, self.limit_setting, 0) if self.limit_setting else 0
        return int(configured or self.limit)


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    kind: Literal["email", "social"]
    settings_cls: type
    factory: Callable[["Settings", Any, DispatchContext], Channel] | str  # or "module:function", imported on use
    network: str | None = None  # for social channels: the post flavour rendered for it ("x", ...)
    posts: PostRules | None = None  # for social channels: how the network counts and shows a post

    def make(self, settings: "Settings", channel_settings: Any, ctx: DispatchContext) -> Channel:
        """The channel object for one dispatch (the factory may raise ChannelDisabled)."""
        factory = self.factory
        if isinstance(factory, str):
            module, _, name = factory.partition(":")
            factory = getattr(importlib.import_module(module), name)
        return factory(settings, channel_settings, ctx)


class Registry:
    def __init__(self) -> None:
        self._specs: dict[str, ChannelSpec] = {}
        self._loaded = False

    def register(self, spec: ChannelSpec) -> None:
        self._specs[spec.name] = spec

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
            if mod.name.startswith("_"):
                continue
            module = importlib.import_module(f"{__name__}.{mod.name}")
            spec = getattr(module, "SPEC", None)
            if spec is not None:
                self.register(spec)
        from importlib.metadata import entry_points  # here: importing it is a third of `publisher status`'s start-up

        for ep in entry_points(group="publisher.channels"):
            self.register(ep.load())

    def names(self) -> list[str]:
        self._load()
        return sorted(self._specs)

    def get(self, name: str) -> ChannelSpec:
        self._load()
        return self._specs[name]

    def social(self) -> list[ChannelSpec]:
        self._load()
        return [s for s in self._specs.values() if s.kind == "social"]

    def post_rules(self, network: str) -> PostRules:
        """The post rules of the social channel that renders `network`'s posts."""
        self._load()
        for spec in self._specs.values():
            if spec.network == network and spec.posts is not None:
                return spec.posts
        raise KeyError(f"no social channel renders {network!r} posts")


registry = Registry()
