"""Bluesky through the atproto SDK."""

from __future__ import annotations

from dataclasses import dataclass

from publisher.channels import ChannelDisabled, ChannelSpec


@dataclass(frozen=True)
class BlueskySettings:
    """The [bluesky] table of settings.toml."""

    service_url: str = "https://bsky.social"
    handle: str | None = None  # or PUBLISHER_BLUESKY_HANDLE
    timeout: float = 30.0
    max_wait: str = "15m"


def make(settings, channel_settings: BlueskySettings, ctx):
    """Build the Bluesky channel (work in progress)."""
    raise ChannelDisabled("bluesky: not implemented yet")


SPEC = ChannelSpec(name="bluesky", kind="social", network="bluesky", settings_cls=BlueskySettings, factory=make)
