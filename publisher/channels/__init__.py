"""Channels: where a rendered edition goes (email, x, mastodon, bluesky, outbox).

Every channel, built-in or plugin, goes through one registry. A channel is a module in this package
(or a plugin exposing the entry point group `publisher.channels`) that defines

    SPEC = ChannelSpec(name="mastodon", kind="social", settings_cls=MastodonSettings, factory=make)

`settings_cls` is a frozen dataclass read from the `[mastodon]` table of settings.toml (unknown keys
fail); `factory(settings, channel_settings, ctx)` returns an object with `dispatch(rendered, campaign)`,
or raises ChannelDisabled with the reason (e.g. a missing credential) so the other channels still run.
Adding a channel means adding a module here; nothing else dispatches on channel names.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Literal, Protocol

if TYPE_CHECKING:
    from publisher.config import Campaign, Settings
    from publisher.ledger import Ledger
    from publisher.models import RenderedEdition
    from publisher.progress import Progress


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


@dataclass
class DispatchReport:
    """What one channel did for one edition."""

    channel: str
    edition_key: str
    sent: int = 0
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
        parts = [f"{self.sent} sent", f"{self.skipped} already sent"]
        for name in ("failed", "unknown", "pending"):
            if getattr(self, name):
                parts.append(f"{getattr(self, name)} {name}")
        return f"{self.channel} {self.edition_key}: " + ", ".join(parts)


class Channel(Protocol):
    name: str

    def dispatch(self, rendered: "RenderedEdition", campaign: "Campaign") -> DispatchReport: ...


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    kind: Literal["email", "social"]
    settings_cls: type
    factory: Callable[["Settings", Any, DispatchContext], Channel]
    network: str | None = None  # for social channels: the post flavour rendered for it ("x", ...)


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
        from importlib.metadata import entry_points

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


registry = Registry()
