"""Meta's Graph API as the Facebook Page, Instagram and Threads channels share it: errors, rate
limits, media containers and reading back what an account already posted. No channel here (no SPEC).

Errors, as the Graph API documents them (developers.facebook.com/docs/graph-api/guides/error-handling),
come as `{"error": {"message", "type", "code", "error_subcode", "is_transient", "fbtrace_id"}}`:

- throttled: code 4 (application request limit), 17 (user request limit), 32 (Page request limit),
  613 (custom rate limit), 80001-80014 (business use case limits: 80001 Pages, 80002 Instagram, ...),
  and HTTP 429. The `X-Business-Use-Case-Usage` header says in `estimated_time_to_regain_access`
  (minutes) when calls work again; application and user limits are counted over a rolling hour, so
  without that figure we come back after an hour.
- the credential: 190 (access token invalid or expired), 102 (session), 10 and 200-299 (permission).
- the server failed: codes 1 and 2 (unknown error, service temporarily unavailable), `is_transient`,
  or an HTTP 5xx. A call that only reads or prepares (a container) is repeated; a call that publishes
  may have taken effect, so its post is `unknown` until a read-back tells.

Content publishing (Instagram and Threads) is two steps: create a media container (it publishes
nothing and expires unused after 24 hours, so creating it again is harmless), wait until its status
is FINISHED (IN_PROGRESS while the server fetches and processes the image; ERROR or EXPIRED end it),
then publish it, the one call that makes the post.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Mapping

from publisher.channels.posting import PostOutcome, ReadBack
from publisher.channels.transport import ApiSettings, JsonApi, body_of, reset_time
from publisher.config import parse_duration

THROTTLED = {4, 17, 32, 613, *range(80001, 80015)}
CREDENTIAL = {190, 102, 10, *range(200, 300)}
SERVER = {1, 2}
ROLLING_WINDOW = timedelta(hours=1)  # application and user request limits: a rolling hour


@dataclass(frozen=True)
class GraphSettings(ApiSettings):
    """The keys the Graph API channels share; each sets its own `api_url` and `api_version`."""

    api_version: str = "v25.0"


@dataclass(frozen=True)
class ContainerSettings(GraphSettings):
    """The Graph API channels that publish through media containers (Instagram, Threads)."""

    poll_every: str = "5s"  # how often to ask whether a media container is ready
    poll_for: str = "5m"  # how long to wait for it before leaving the post for the next run

    def _check(self, where: str) -> None:
        super()._check(where)
        parse_duration(self.poll_every, f"{where}.poll_every")
        parse_duration(self.poll_for, f"{where}.poll_for")


class GraphNetwork(ReadBack):
    """What the Graph API networks set up alike: the API client with the token as a Bearer header (never
    in a URL), the clock, the waits."""

    title = "Graph API"  # the network's name in messages

    def __init__(self, settings: GraphSettings, token: str, clock: Callable[[], datetime]):
        super().__init__()
        self.settings, self.clock = settings, clock
        where = f"[{getattr(self, 'channel', 'graph')}]"
        self.max_wait = parse_duration(settings.max_wait, f"{where}.max_wait")
        if isinstance(settings, ContainerSettings):
            self.every = parse_duration(settings.poll_every, f"{where}.poll_every").total_seconds()
            self.patience = parse_duration(settings.poll_for, f"{where}.poll_for").total_seconds()
        self.api = JsonApi(self.title, f"{settings.api_url}/{settings.api_version}", settings.timeout,
                           {"Authorization": f"Bearer {token}"}, [token])


@dataclass(frozen=True)
class GraphError:
    status: int
    code: int
    subcode: int
    message: str
    transient: bool

    def __str__(self) -> str:
        sub = f"/{self.subcode}" if self.subcode else ""
        return f"{self.status} (code {self.code}{sub}): {self.message}"


def error_of(response) -> GraphError:  # noqa: ANN001 - an httpx.Response
    """The Graph error in a reply (its status alone when the body says nothing)."""
    err = body_of(response).get("error") or {}
    if not isinstance(err, dict):
        err = {"message": str(err)}
    return GraphError(status=response.status_code, code=int(err.get("code") or 0),
                      subcode=int(err.get("error_subcode") or 0),
                      message=str(err.get("error_user_msg") or err.get("message") or response.reason_phrase or ""),
                      transient=bool(err.get("is_transient")))


def regain_at(headers: Mapping[str, str], now: datetime) -> datetime:
    """When a throttled app may call again: the longest `estimated_time_to_regain_access` (minutes) in
    X-Business-Use-Case-Usage, else Retry-After, else the end of the rolling hour."""
    minutes = 0
    try:
        usage = json.loads(headers.get("x-business-use-case-usage") or "{}")
        for entries in usage.values() if isinstance(usage, dict) else ():
            for entry in entries if isinstance(entries, list) else ():
                minutes = max(minutes, int(entry.get("estimated_time_to_regain_access") or 0))
    except (ValueError, TypeError, AttributeError):
        minutes = 0
    if minutes:
        return now + timedelta(minutes=minutes)
    return reset_time(headers, now, default=ROLLING_WINDOW)


def failure(response, api: JsonApi, now: datetime, *, takes_effect: bool, token: str) -> PostOutcome:  # noqa: ANN001
    """What a Graph error reply means for the post."""
    err = error_of(response)
    text = api.line(f"{err} from {api.name}")
    if response.status_code == 429 or err.code in THROTTLED:
        return PostOutcome("rate_limited", retry_at=regain_at(response.headers, now), reply=text)
    if err.code in CREDENTIAL or response.status_code == 401:
        return PostOutcome("failed", reply=f"{text}; check {token} and its permissions")
    if response.status_code >= 500 or err.code in SERVER or err.transient:
        if takes_effect:
            return PostOutcome("unknown", reply=f"{text}; the next run reads the account back before anything is retried")
        return PostOutcome("retry", reply=text)
    return PostOutcome("failed", reply=text)


def wait_ready(api: JsonApi, container: str, field: str, *, every: float, patience: float, now: datetime,
               token: str, sleep: Callable[[float], Any] = time.sleep) -> PostOutcome | None:
    """Poll a container (`GET /{id}?fields=<field>`) until it is FINISHED: None then, else what to do."""
    deadline = time.monotonic() + patience
    while True:
        reply = api.call("GET", f"/{container}", params={"fields": f"{field},error_message"}, takes_effect=False)
        if isinstance(reply, PostOutcome):
            return reply
        if reply.status_code != 200:
            return failure(reply, api, now, takes_effect=False, token=token)
        body = body_of(reply)
        status = str(body.get(field) or "")
        if status in ("FINISHED", "PUBLISHED"):
            return None
        if status in ("ERROR", "EXPIRED"):
            why = body.get("error_message") or status.lower()
            return PostOutcome("failed", reply=api.line(f"{api.name} could not process the media: {why}"))
        if time.monotonic() + every > deadline:
            return PostOutcome("retry", reply=f"{api.name} was still processing the media after {patience:.0f}s")
        sleep(every)


def over_quota(api: JsonApi, path: str, now: datetime, usage: str = "quota_usage", config: str = "config") -> PostOutcome | None:
    """A `rate_limited` outcome when the account's publishing quota for the moving 24 hours is used up
    (`GET .../content_publishing_limit` or `threads_publishing_limit`); None otherwise or when unknown."""
    reply = api.call("GET", path, params={"fields": f"{usage},{config}"}, takes_effect=False)
    if isinstance(reply, PostOutcome) or reply.status_code != 200:
        return None  # the publish call itself will say if the limit is reached
    for entry in body_of(reply).get("data") or []:
        used, total = entry.get(usage), (entry.get(config) or {}).get("quota_total")
        if isinstance(used, int) and isinstance(total, int) and used >= total:
            return PostOutcome("rate_limited", retry_at=now + ROLLING_WINDOW,
                               reply=f"{api.name}: {used} of {total} posts published in the last 24 hours")
    return None


def find_text(api: JsonApi, paths: tuple[str, ...], field: str, text: str, what: str,
              link: str = "permalink") -> tuple[PostOutcome | None, bool]:
    """Read back the account's latest posts (`GET <path>?fields=id,<field>,<link>`) for one whose
    `field` is exactly `text`, the post an earlier run's request made: (found, True), or (None, True)
    when every list was read and it is not there, or (None, False) when a list could not be read."""
    for path in paths:
        reply = api.call("GET", path, params={"fields": f"id,{field},{link}", "limit": 25}, takes_effect=False)
        if isinstance(reply, PostOutcome) or reply.status_code != 200:
            return None, False
        for item in body_of(reply).get("data") or []:
            if isinstance(item, dict) and item.get(field) == text and item.get("id"):
                where = item.get(link) or f"{what} {item['id']}"
                return PostOutcome("sent", remote_id=str(item["id"]), found=True, reply=f"already posted as {where}"), True
    return None, True
