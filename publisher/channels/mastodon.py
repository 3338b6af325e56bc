"""Mastodon through Mastodon.py, against the instance URL from settings.

Every create carries an `Idempotency-Key` derived from the ledger key (edition, network, position):
Mastodon remembers the key for an hour and answers a repeat with the status it already made. So a
5xx is retried at once with the same key, and a post whose outcome is `unknown` (timeout, connection
reset) is sent again by the next run without --resend-unknown, as long as the key is still fresh
(`IDEMPOTENCY_WINDOW`, a margin under Mastodon's hour); after that only the user can resend it.

A reply to a repeated key is the status made the first time: its `created_at` is then older than the
reply's `Date` (both from the instance's clock), and the post is reported as found already posted.

Media (Mastodon 3.1.4+): `POST /api/v2/media` answers 202 while the instance processes the file (its
`url` is null) and a status naming an unprocessed attachment is refused (422), so we poll
`GET /api/v1/media/:id` (206 while processing, 200 when done) within `[mastodon].timeout` before the
status is created; an image still processing then is left out (the post never waits on it).

Length: grapheme clusters, every http(s) URL counts 23, `@user@instance` counts as `@user`; limit 500
or `[mastodon].max_characters`.
"""

from __future__ import annotations

import email.utils
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable, Literal

from publisher.channels import ChannelDisabled, ChannelSpec, PostRules
from publisher.channels.counting import URL_LENGTH, graphemes, with_links_as
from publisher.channels.posting import Plain, PostKey, PostOutcome, Thread
from publisher.channels.social import SocialChannel, outbox_channel
from publisher.channels.transport import fetch_image, redact, reply_line, requests_not_sent, reset_time
from publisher.config import parse_duration, secret
from publisher.config.schema import check_at_least, check_url
from publisher.errors import ConfigError
from publisher.models import Delivery, Post

if TYPE_CHECKING:
    from publisher.config import Campaign

TOKEN = "PUBLISHER_MASTODON_ACCESS_TOKEN"
DEFAULT_LIMIT = 500
IDEMPOTENCY_WINDOW = timedelta(minutes=50)  # Mastodon keeps an Idempotency-Key for one hour
REPLAY_AGE = timedelta(seconds=10)  # a status this much older than the reply answering its key was made before
_MENTION = re.compile(r"(?<![\w/])@(\w+)@[\w.-]+\w", re.UNICODE)


def mastodon_length(text: str) -> int:
    """Mastodon's count: grapheme clusters, http(s) URLs 23, `@user@instance` as `@user`."""
    return with_links_as(text, URL_LENGTH, lambda plain: graphemes(_MENTION.sub(lambda m: "@" + m.group(1), plain)))


@dataclass(frozen=True)
class MastodonSettings:
    """The [mastodon] table of settings.toml."""

    instance_url: str | None = None  # e.g. "https://piaille.fr"; required in live mode
    max_characters: int = 0  # 0 = ask the instance (GET /api/v1/instance), 500 if it does not say
    visibility: Literal["public", "unlisted", "private", "direct"] | None = None  # None = the campaign's
    media_upload: bool = False  # attach the lead article's thumbnail
    timeout: float = 30.0
    max_wait: str = "5m"  # longest 429/spacing wait inside one run; a longer one leaves the post pending

    def _check(self, where: str) -> None:
        if self.instance_url:  # "mastodon.social" alone is not a URL; say so here, not at the first post
            check_url(self.instance_url, f"{where}.instance_url", "https://piaille.fr")
        parse_duration(self.max_wait, f"{where}.max_wait")
        check_at_least(self, where, 0.1, "timeout", meaning=" (seconds)")
        if self.max_characters < 0:
            raise ConfigError(f"{where}.max_characters must be 0 (ask the instance) or a positive number")


def idempotency_key(key: PostKey) -> str:
    """The same post always carries the same key, whichever run sends it."""
    return f"publisher-{key.digest[:40]}"


class MastodonNetwork(Plain):
    """Posts through Mastodon.py; translates its errors into Outcomes in this one place."""

    channel = "mastodon"
    network = "mastodon"
    paced = True

    def __init__(self, settings: MastodonSettings, token: str, clock: Callable[[], datetime]):
        import requests  # here, not at the top: only a live send pays for importing them
        from mastodon import Mastodon

        self.settings = settings
        self.clock = clock
        self.max_wait = parse_duration(settings.max_wait, "[mastodon].max_wait")
        self._token = token
        self._last: Any = None  # requests.Response  # the last reply, for its rate-limit headers
        session = requests.Session()
        session.hooks["response"].append(self._seen)
        self.api = Mastodon(access_token=token, api_base_url=settings.instance_url, request_timeout=settings.timeout,
                            ratelimit_method="throw", version_check_mode="none", session=session)
        self.limit = settings.max_characters or None
        self.visibility = settings.visibility
        self.language = "fr"

    def _seen(self, response: Any, *args: Any, **kwargs: Any) -> None:
        self._last = response

    def prepare(self, campaign: "Campaign") -> None:
        """Read the instance's character limit unless settings fix it; a failure keeps 500."""
        self.visibility = self.settings.visibility or campaign.social.visibility
        self.language = campaign.social.language
        from mastodon import MastodonError

        if self.limit is None:
            try:
                info = self.api.instance_v1()
                statuses = ((info.get("configuration") or {}).get("statuses") or {})
                self.limit = int(statuses.get("max_characters") or info.get("max_toot_chars") or DEFAULT_LIMIT)
            except (MastodonError, ValueError, TypeError, AttributeError):
                self.limit = DEFAULT_LIMIT

    def retry_unknown(self, row: Delivery, now: datetime) -> bool:
        return row.updated_at is not None and now - row.updated_at < IDEMPOTENCY_WINDOW

    def create(self, post: Post, reply_to: Thread | None, key: PostKey) -> PostOutcome:
        from mastodon import (
            MastodonAPIError,
            MastodonError,
            MastodonNetworkError,
            MastodonRatelimitError,
            MastodonServerError,
            MastodonUnauthorizedError,
        )

        limit = self.limit or DEFAULT_LIMIT
        if post.length > limit:
            return PostOutcome("failed", reply=f"the post counts {post.length} characters but {self.settings.instance_url}"
                                           f" allows {limit}; set [mastodon].max_characters = {limit} for future editions")
        media_ids, note = self._media(post)
        try:
            status = self.api.status_post(post.text, in_reply_to_id=reply_to.parent if reply_to else None,
                                          media_ids=media_ids, visibility=self.visibility,
                                          language=post.language or self.language, idempotency_key=idempotency_key(key))
        except MastodonRatelimitError:
            headers = self._last.headers if self._last is not None and self._last.status_code == 429 else None
            return PostOutcome("rate_limited", retry_at=reset_time(headers, self.clock()), reply="429 Too Many Requests from Mastodon")
        except MastodonNetworkError as exc:
            if requests_not_sent(exc):
                return PostOutcome("retry", reply=f"could not reach {self.settings.instance_url}")
            return PostOutcome("unknown", reply="no reply from Mastodon after the request was sent; the idempotency key"
                                            " makes the next run's retry safe for an hour")
        except MastodonServerError as exc:
            return PostOutcome("retry", maybe_taken=True, reply=self._text(exc))  # same key: a repeat cannot duplicate
        except MastodonUnauthorizedError as exc:
            return PostOutcome("failed", reply=f"{self._text(exc)}; check {TOKEN}")
        except MastodonAPIError as exc:  # 404 (reply target gone), 422 (refused), ...
            return PostOutcome("failed", reply=self._text(exc))
        except MastodonError as exc:
            return PostOutcome("failed", reply=reply_line(redact(str(exc), [self._token])))
        status_id = status.get("id") if hasattr(status, "get") else None
        if status_id is None:
            return PostOutcome("unknown", reply="Mastodon accepted the request but returned no status id")
        url = status.get("url") or f"status {status_id}"
        if self._replayed(status):
            return PostOutcome("sent", remote_id=str(status_id), found=True,
                               reply=f"{url}: the Idempotency-Key was already used, so the status already existed")
        return PostOutcome("sent", remote_id=str(status_id), reply=f"{url}{note}")

    def _replayed(self, status: Any) -> bool:
        """Did Mastodon answer with a status it made for an earlier request with the same key? Its
        `created_at` is then older than the reply itself (both read from the instance's clock)."""
        created = status.get("created_at")
        date = self._last.headers.get("Date") if self._last is not None else None
        if not isinstance(created, datetime) or not date:
            return False
        try:
            replied = email.utils.parsedate_to_datetime(date)
        except (TypeError, ValueError):
            return False
        if created.tzinfo is None or replied.tzinfo is None:
            return False
        return replied - created > REPLAY_AGE

    def _media(self, post: Post) -> tuple[list[str] | None, str]:
        """Upload the post's image if media upload is on; a failure only drops the image."""
        if not self.settings.media_upload or not post.image:
            return None, ""
        image = fetch_image(post.image, self.settings.timeout)
        if image is None:
            return None, " (image skipped: could not fetch it)"
        data, mime = image
        description = (post.card or {}).get("title") or None
        from mastodon import MastodonError

        try:
            media = self.api.media_post(data, mime_type=mime, description=description)
            # POST /api/v2/media answers 202 while the instance still processes the file (its `url` is
            # null); a status naming it before then is refused (422), so poll GET /api/v1/media/:id
            # (206 while processing, 200 when done) until it is ready, within [mastodon].timeout.
            deadline, pause = time.monotonic() + self.settings.timeout, 0.25
            while not media.get("url"):
                if time.monotonic() + pause > deadline:
                    return None, " (image skipped: the instance was still processing it)"
                time.sleep(pause)
                pause = min(pause * 2, 5.0)
                media = self.api.media(media["id"])
        except MastodonError as exc:
            return None, f" (image skipped: upload failed: {reply_line(redact(str(exc), [self._token]), 80)})"
        return [str(media["id"])], ""

    def _text(self, exc: Exception) -> str:
        args = exc.args
        if len(args) >= 4:  # ('Mastodon API returned error', status, reason, error message)
            text = f"{args[1]} {args[2]} from Mastodon" + (f": {args[3]}" if args[3] else "")
        else:
            text = str(exc)
        return reply_line(redact(text, [self._token]))


def make(settings, channel_settings: MastodonSettings, ctx) -> SocialChannel:
    """The Mastodon channel: the outbox form, or live posting with PUBLISHER_MASTODON_ACCESS_TOKEN."""
    if ctx.outbox is not None:
        return outbox_channel("mastodon", ctx)
    if not channel_settings.instance_url:
        raise ChannelDisabled(f"no instance: set [mastodon].instance_url in {settings.source}")
    token = secret(TOKEN)
    if not token:
        raise ChannelDisabled(f"missing {TOKEN} in the environment; set it, or use"
                              f" [publisher] delivery = \"outbox\" in {settings.source}")
    return SocialChannel(MastodonNetwork(channel_settings, token, ctx.ledger.clock), ctx)  # type: ignore[arg-type]


SPEC = ChannelSpec(name="mastodon", kind="social", network="mastodon", settings_cls=MastodonSettings, factory=make,
                   posts=PostRules(length=mastodon_length, limit=DEFAULT_LIMIT, limit_setting="max_characters"))
