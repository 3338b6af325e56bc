"""How the social channels read the wire: did a failed request leave, when does a rate limit reset,
fetching a thumbnail, and a JSON API client for the networks without a client library. No channel logic here.

The distinction that matters for exactly-once: an error raised *before* the request reached the
server (DNS failure, connection refused, connect timeout) proves nothing was posted, so the post may
be tried again; an error *after* it was sent (read timeout, connection reset while waiting for the
reply) means the post may exist, so its ledger row becomes `unknown`.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable, Mapping

from publisher.channels.posting import PostOutcome
from publisher.config import parse_duration
from publisher.config.schema import check_at_least, check_url
from publisher.text import one_line

# requests and httpx are imported inside the functions: every CLI command loads the channel registry,
# and only a live send needs the HTTP libraries.

MAX_IMAGE_BYTES = 5_000_000


def requests_not_sent(exc: BaseException | None) -> bool:
    """True when a requests (or urllib3) error proves the request never reached the server."""
    import requests

    seen = 0
    while exc is not None and seen < 6:  # library wrappers chain the original error
        if isinstance(exc, (requests.exceptions.ConnectTimeout, requests.exceptions.InvalidURL,
                            requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema)):
            return True
        if isinstance(exc, requests.exceptions.ConnectionError):
            reason = exc.args[0] if exc.args else None
            inner = getattr(reason, "reason", reason)  # MaxRetryError(reason=NewConnectionError(...))
            name = type(inner).__name__
            return name in ("NewConnectionError", "NameResolutionError", "ConnectTimeoutError")
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def httpx_not_sent(exc: BaseException | None) -> bool:
    """True when an httpx error (possibly wrapped by atproto) proves the request never left."""
    import httpx

    seen = 0
    while exc is not None and seen < 6:
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol)):
            return True
        if isinstance(exc, httpx.TransportError):
            return False
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def reset_time(headers: Mapping[str, str] | None, now: datetime, default: timedelta = timedelta(seconds=60)) -> datetime:
    """When a 429 says to come back: Retry-After (seconds or date), else an x-rate-limit-reset /
    ratelimit-reset (epoch seconds) or X-RateLimit-Reset (ISO 8601, Mastodon) header, else now + default."""
    h = {k.lower(): v for k, v in (headers or {}).items()}
    retry_after = h.get("retry-after")
    if retry_after:
        try:
            return now + timedelta(seconds=max(0.0, float(retry_after)))
        except ValueError:
            try:
                return email.utils.parsedate_to_datetime(retry_after).astimezone(timezone.utc)
            except (TypeError, ValueError):
                pass
    for name in ("x-rate-limit-reset", "ratelimit-reset", "x-ratelimit-reset"):
        value = h.get(name)
        if not value:
            continue
        try:
            return datetime.fromtimestamp(float(value), timezone.utc)
        except ValueError:
            try:
                when = datetime.fromisoformat(value.replace("Z", "+00:00"))
                return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
            except ValueError:
                continue
    return now + default


def fetch_image(url: str | None, timeout: float, max_bytes: int = MAX_IMAGE_BYTES) -> tuple[bytes, str] | None:
    """The bytes and MIME type of an image URL, or None: a missing thumbnail never blocks a post."""
    import httpx

    if not url or not url.startswith(("http://", "https://")):
        return None
    try:
        with httpx.Client(timeout=timeout, follow_redirects=True) as client:
            with client.stream("GET", url) as resp:
                if resp.status_code != 200:
                    return None
                mime = resp.headers.get("content-type", "").split(";")[0].strip().lower()
                if not mime.startswith("image/"):
                    return None
                data = b""
                for chunk in resp.iter_bytes():
                    data += chunk
                    if len(data) > max_bytes:
                        return None
                return (data, mime) if data else None
    except httpx.HTTPError:
        return None


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Text safe for logs and messages: every secret value replaced, whatever a library put in it."""
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text


def reply_line(text: object, limit: int = 200) -> str:
    """A server reply squeezed onto one short line for the ledger and the report."""
    s = one_line(str(text))
    return s if len(s) <= limit else s[: limit - 1] + "…"


class JsonApi:
    """One httpx client for a network's JSON API: its base URL, a timeout, auth headers, and the
    secrets to scrub from every reply line. Used by the channels without a client library."""

    def __init__(self, name: str, base_url: str, timeout: float, headers: Mapping[str, str],
                 secrets: Iterable[str | None]):
        import httpx

        self.name = name
        self.secrets = [s for s in secrets if s]
        # trust_env=False: no proxy or .netrc from the environment on the way to a network holding our token
        self.client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, headers=dict(headers),
                                   trust_env=False, follow_redirects=False)

    def call(self, method: str, path: str, *, takes_effect: bool, **kwargs):  # noqa: ANN201 - httpx.Response | PostOutcome
        """The response, or what a transport failure means: a request that never left (or one that
        changes nothing when repeated) may be retried; one that may have taken effect is unknown."""
        import httpx

        try:
            return self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            if not takes_effect or httpx_not_sent(exc):
                return PostOutcome("retry", reply=f"could not reach {self.name} ({type(exc).__name__})")
            return PostOutcome("unknown", reply=f"no reply from {self.name} after the request was sent"
                                                f" ({type(exc).__name__})")

    def line(self, text: object) -> str:
        """`text` as one short line without any secret."""
        return reply_line(redact(str(text), self.secrets))

    def close(self) -> None:
        self.client.close()


def body_of(response) -> dict:  # noqa: ANN001 - an httpx.Response
    """The JSON object of a reply, or {} when it is not one."""
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class ApiSettings:
    """The keys every settings table of an HTTP API channel has (facebook, instagram, threads, linkedin,
    telegram); each channel's table adds its own and sets `api_url`'s default."""

    api_url: str = ""  # the API's base URL; tests point it at a local server
    timeout: float = 30.0
    max_wait: str = "5m"  # longest 429/spacing wait inside one run; a longer one leaves the post pending

    def _check(self, where: str) -> None:
        check_url(self.api_url, f"{where}.api_url", type(self)().api_url or "https://...")
        parse_duration(self.max_wait, f"{where}.max_wait")
        check_at_least(self, where, 0.1, "timeout", meaning=" (seconds)")
