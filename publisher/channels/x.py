"""X (Twitter) through tweepy's v2 Client, OAuth 1.0a user context.

tweepy's `Client` builds every URL from the fixed host https://api.twitter.com and passes no timeout.
Rather than copy its `request` method, we mount a requests adapter on the client's own session for that
host: it rewrites the base URL when `[x].api_url` points elsewhere (tests, a gateway) and gives every
request the configured timeout. Media upload is v1.1 (`tweepy.API.simple_upload`), redirected the same way.

Exactly once on X: X has no idempotency key, so a create whose reply never came back is `unknown`
and only `--resend-unknown` sends it again. That resend is fairly safe because X refuses duplicate
content with a 403, which we read as "already posted".

Length: X counts a post with its twitter-text v3 rules (weighted code points, an emoji sequence as 2,
every URL as 23 whatever its length, including bare domains like `endurance-info.paris`); we count
with `twitter-text-parser`, the port of the official library and its configuration, rather than
our own approximation (tests/data/x_lengths.tsv holds strings and the official counts).
"""

from __future__ import annotations

import io
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Callable
from urllib.parse import urlsplit

from publisher.channels import ChannelDisabled, ChannelSpec, PostRules
from publisher.channels.posting import Plain, PostKey, PostOutcome, Thread
from publisher.channels.social import SocialChannel, outbox_channel
from publisher.channels.transport import fetch_image, redact, reply_line, requests_not_sent, reset_time
from publisher.config import parse_duration, secret
from publisher.config.schema import check_at_least, check_url
from publisher.models import Delivery, Post

LIMIT = 280
CREDENTIALS = ("PUBLISHER_X_CONSUMER_KEY", "PUBLISHER_X_CONSUMER_SECRET",
               "PUBLISHER_X_ACCESS_TOKEN", "PUBLISHER_X_ACCESS_TOKEN_SECRET")


@dataclass(frozen=True)
class XSettings:
    """The [x] table of settings.toml."""

    api_url: str = "https://api.twitter.com"  # tests point this at a local server
    upload_url: str = "https://upload.twitter.com"
    media_upload: bool = False  # attach the lead article's thumbnail (v1.1 media upload)
    timeout: float = 30.0
    max_wait: str = "5m"  # longest 429/spacing wait inside one run; a longer one leaves the post pending

    def _check(self, where: str) -> None:
        check_url(self.api_url, f"{where}.api_url", "https://api.twitter.com")
        check_url(self.upload_url, f"{where}.upload_url", "https://upload.twitter.com")
        parse_duration(self.max_wait, f"{where}.max_wait")
        check_at_least(self, where, 0.1, "timeout", meaning=" (seconds)")


_BARE_MARK = re.compile("[\u00a9\u00ae](?!\ufe0f)")  # © or ® in text presentation (no emoji selector)


def x_length(text: str) -> int:
    """The weighted length X gives `text` (twitter-text v3: URLs 23, CJK and emoji 2, 280 max)."""
    # deferred for start-up time: importing twitter_text compiles its emoji and TLD patterns (~0.4 s)
    from twitter_text import parse_tweet

    text = unicodedata.normalize("NFC", text)
    # Where the port and the official JavaScript library disagree, follow the official one: it counts
    # CR LF as two characters (the port folds it into one LF) and a © or ® without the emoji variation
    # selector as one plain character (the port counts it as an emoji, 2). tests/data/x_lengths.jsonl.
    return parse_tweet(text).weightedLength + text.count("\r\n") - len(_BARE_MARK.findall(text))


def _mount(session, real: str, configured: str, timeout: float) -> None:  # noqa: ANN001 - a requests.Session
    """Send the session's requests for `real` to `configured` instead, always with a timeout."""
    import requests
    from requests.adapters import HTTPAdapter

    base = None if configured.rstrip("/") == real else configured.rstrip("/")

    class HostAdapter(HTTPAdapter):
        def send(self, request, **kwargs):  # noqa: ANN001 - requests' own signature
            if base:
                parts = urlsplit(request.url)
                request.url = base + parts.path + (f"?{parts.query}" if parts.query else "")
                kwargs["proxies"] = requests.utils.get_environ_proxies(request.url)
            if not kwargs.get("timeout"):
                kwargs["timeout"] = timeout
            return super().send(request, **kwargs)

    session.mount(real + "/", HostAdapter())


class XNetwork(Plain):
    """Posts through tweepy; translates its errors into Outcomes in this one place."""

    channel = "x"
    network = "x"
    paced = True

    def __init__(self, settings: XSettings, creds: dict[str, str], clock: Callable[[], datetime]):
        self.settings = settings
        self.clock = clock
        self.max_wait = parse_duration(settings.max_wait, "[x].max_wait")
        self._secrets = list(creds.values())
        import tweepy  # here, not at the top: only a live send pays for importing it

        key, key_secret, token, token_secret = (creds[n] for n in CREDENTIALS)
        self.client = tweepy.Client(consumer_key=key, consumer_secret=key_secret, access_token=token,
                                    access_token_secret=token_secret, return_type=dict)
        _mount(self.client.session, "https://api.twitter.com", settings.api_url, settings.timeout)
        self.api = None
        if settings.media_upload:
            upload_host = urlsplit(settings.upload_url).netloc or "upload.twitter.com"
            auth = tweepy.OAuth1UserHandler(key, key_secret, token, token_secret)
            self.api = tweepy.API(auth, timeout=settings.timeout, upload_host=upload_host)
            _mount(self.api.session, f"https://{upload_host}", settings.upload_url, settings.timeout)

    def prepare(self, campaign) -> None:  # noqa: ANN001
        return None  # OAuth 1.0a signs each request; there is no session to open

    def retry_unknown(self, row: Delivery, now: datetime) -> bool:
        return False  # no idempotency key on X: only the user's --resend-unknown

    def create(self, post: Post, reply_to: Thread | None, key: PostKey) -> PostOutcome:
        import requests
        import tweepy

        media_ids, note = self._media(post)
        try:
            data = self.client.create_tweet(text=post.text, media_ids=media_ids,
                                            in_reply_to_tweet_id=reply_to.parent if reply_to and reply_to.parent else None)
        except tweepy.TooManyRequests as exc:
            return PostOutcome("rate_limited", retry_at=reset_time(exc.response.headers, self.clock()),
                           reply="429 Too Many Requests from X")
        except tweepy.Forbidden as exc:
            text = self._text(exc)
            if "duplicate" in text.lower():
                return PostOutcome("sent", found=True,
                                   reply=f"X refused it as duplicate content, so it is already posted (id unknown): {text}")
            return PostOutcome("failed", reply=f"403 from X: {text}")
        except tweepy.Unauthorized as exc:
            return PostOutcome("failed", reply=f"401 from X: {self._text(exc)}; check the PUBLISHER_X_* credentials")
        except tweepy.TwitterServerError as exc:
            # X has been seen to answer 5xx and still post: not known to be safe to repeat
            return PostOutcome("unknown", reply=f"{exc.response.status_code} from X after the request was sent: {self._text(exc)}")
        except tweepy.HTTPException as exc:
            return PostOutcome("failed", reply=f"{exc.response.status_code} from X: {self._text(exc)}")
        except requests.RequestException as exc:
            if requests_not_sent(exc):
                return PostOutcome("retry", reply=f"could not reach X: {type(exc).__name__}")
            return PostOutcome("unknown", reply=f"no reply from X after the request was sent ({type(exc).__name__})")
        tweet_id = (data.get("data") or {}).get("id") if isinstance(data, dict) else None
        if not tweet_id:
            return PostOutcome("unknown", reply="X accepted the request but returned no tweet id")
        return PostOutcome("sent", remote_id=str(tweet_id), reply=f"tweet {tweet_id}{note}")

    def _media(self, post: Post) -> tuple[list[str] | None, str]:
        """Upload the post's image if media upload is on; a failure only drops the image."""
        if self.api is None or not post.image:
            return None, ""
        image = fetch_image(post.image, self.settings.timeout)
        if image is None:
            return None, " (image skipped: could not fetch it)"
        data, mime = image
        import requests
        import tweepy

        try:
            media = self.api.simple_upload(f"thumbnail.{mime.split('/')[-1]}", file=io.BytesIO(data))
        except (tweepy.TweepyException, requests.RequestException) as exc:
            return None, f" (image skipped: upload failed: {reply_line(self._redact(str(exc)), 80)})"
        return [str(media.media_id_string)], ""

    def _text(self, exc) -> str:  # noqa: ANN001 - a tweepy.HTTPException
        text = " ".join(str(m) for m in exc.api_messages)
        if not text:
            try:
                body = exc.response.json()
                text = str(body.get("detail") or body.get("title") or "") if isinstance(body, dict) else ""
            except ValueError:
                text = ""
        text = text or exc.response.text or exc.response.reason or ""
        return reply_line(self._redact(text))

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)


def make(settings, channel_settings: XSettings, ctx) -> SocialChannel:
    """The X channel: the outbox form, or live posting with PUBLISHER_X_* credentials."""
    if ctx.outbox is not None:
        return outbox_channel("x", ctx)
    creds = {name: secret(name) for name in CREDENTIALS}
    missing = [name for name, value in creds.items() if not value]
    if missing:
        raise ChannelDisabled(f"missing {', '.join(missing)} in the environment; set them, or use"
                              f" [publisher] delivery = \"outbox\" in {settings.source}")
    return SocialChannel(XNetwork(channel_settings, creds, ctx.ledger.clock), ctx)  # type: ignore[arg-type]


SPEC = ChannelSpec(name="x", kind="social", network="x", settings_cls=XSettings, factory=make,
                   posts=PostRules(length=x_length, limit=LIMIT))
