"""Mastodon through Mastodon.py, against the instance URL from settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from publisher.channels import ChannelDisabled, ChannelSpec


@dataclass(frozen=True)
class MastodonSettings:
    """The [mastodon] table of settings.toml."""

    instance_url: str | None = None  # e.g. "https://piaille.fr"; required in live mode
    max_characters: int = 0  # 0 = ask the instance (GET /api/v1/instance), 500 if it does not say
    visibility: Literal["public", "unlisted", "private", "direct"] | None = None  # None = the campaign's
    media_upload: bool = False
    timeout: float = 30.0
    max_wait: str = "15m"


def make(settings, channel_settings: MastodonSettings, ctx):
    """Build the Mastodon channel (work in progress)."""
    raise ChannelDisabled("mastodon: not implemented yet")


SPEC = ChannelSpec(name="mastodon", kind="social", network="mastodon", settings_cls=MastodonSettings, factory=make)
