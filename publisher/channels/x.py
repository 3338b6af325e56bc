"""X (Twitter) through tweepy's v2 Client, OAuth 1.0a user context."""

from __future__ import annotations

from dataclasses import dataclass

from publisher.channels import ChannelDisabled, ChannelSpec


@dataclass(frozen=True)
class XSettings:
    """The [x] table of settings.toml."""

    api_url: str = "https://api.twitter.com"  # tests point this at a local server
    upload_url: str = "https://upload.twitter.com"
    media_upload: bool = False  # attach the lead article's thumbnail to the first post
    timeout: float = 30.0
    max_wait: str = "15m"  # longest 429 wait inside one run; longer waits leave posts pending


def make(settings, channel_settings: XSettings, ctx):
    """Build the X channel (work in progress)."""
    raise ChannelDisabled("x: not implemented yet")


SPEC = ChannelSpec(name="x", kind="social", network="x", settings_cls=XSettings, factory=make)
