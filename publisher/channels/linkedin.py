"""LinkedIn organisation page through the Posts API (httpx: LinkedIn publishes no Python client for it).

What we implement, the versioned REST API (`LinkedIn-Version: 202603`, `[linkedin].api_version`, with
`X-Restli-Protocol-Version: 2.0.0`), as member of an organisation's page with the
`w_organization_social` permission (`PUBLISHER_LINKEDIN_ACCESS_TOKEN`, a Bearer token):

- `POST /rest/posts` with `author` (`urn:li:organization:<id>`), `commentary` (the post text in
  LinkedIn's "little text" format), `visibility: PUBLIC`, `distribution.feedDistribution: MAIN_FEED`,
  `lifecycleState: PUBLISHED` and `content.article` (`source`: the lead article's URL, `title`,
  `description`): 201 Created, the post's URN in the `x-restli-id` header.
- `GET /rest/posts?q=author&author=<urn>&count=20` reads the page's latest posts back.

Little text: the characters `\\ | { } @ [ ] ( ) < > # * _ ~` are reserved and written with a backslash,
except our hashtags, written `{hashtag|\\#|WEC}` so they become LinkedIn hashtags. Commentary takes
3,000 characters (counted in UTF-16 code units here, which never undercounts).

Errors: 401 (token expired or revoked: LinkedIn tokens last 60 days) and 403 (permission) fail the
post; 426 (the LinkedIn-Version is no longer served) leaves it planned with the setting to change; 422 "duplicate" means the page already has this post (its URN is read back); 429 is a
throttle: LinkedIn counts its application and member limits per day, reset at midnight UTC, so the
post waits until then unless a Retry-After says otherwise; 5xx or a lost reply is `unknown`.

Exactly once: no idempotency key; an unknown post is looked for in the page's latest posts by the next
run (same commentary: found already posted; a complete read without it: sent again; a failed read:
left for `--resend-unknown`). A page feed has no threads: in "thread" mode only the lead post goes out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from typing import Callable
from urllib.parse import quote

from publisher.channels import ChannelSpec, PostRules
from publisher.channels.counting import utf16_length
from publisher.channels.posting import PostKey, PostOutcome, ReadBack, Thread
from publisher.channels.social import token_factory
from publisher.channels.transport import ApiSettings, JsonApi, body_of
from publisher.config import parse_duration
from publisher.models import Post

TOKEN = "PUBLISHER_LINKEDIN_ACCESS_TOKEN"
LIMIT = 3000
_RESERVED = re.compile(r"([\\|{}@\[\]()<>#*_~])")
_HASHTAG = re.compile(r"(?<!\S)#(\w+)")


@dataclass(frozen=True)
class LinkedInSettings(ApiSettings):
    """The [linkedin] table of settings.toml."""

    api_url: str = "https://api.linkedin.com"
    # the LinkedIn-Version header, YYYYMM. LinkedIn serves each monthly version for at least a year, then
    # answers 426: 202603 is served until 16 March 2027; set a newer one here when LinkedIn announces its end
    api_version: str = "202603"
    organization: str | None = None  # the page's organisation id (digits) or URN; required in live mode


def little_text(text: str) -> str:
    """`text` as LinkedIn's little text: reserved characters escaped, hashtags as hashtag templates."""
    out, pos = [], 0
    for m in _HASHTAG.finditer(text):
        out.append(_RESERVED.sub(r"\\\1", text[pos:m.start()]) + "{hashtag|\\#|" + m.group(1) + "}")
        pos = m.end()
    return "".join(out) + _RESERVED.sub(r"\\\1", text[pos:])


def author_urn(organization: str) -> str:
    return organization if organization.startswith("urn:li:") else f"urn:li:organization:{organization}"


class LinkedInNetwork(ReadBack):
    """Posts through the Posts API; translates its replies into Outcomes in this one place."""

    channel = "linkedin"
    network = "linkedin"

    def __init__(self, settings: LinkedInSettings, token: str, clock: Callable[[], datetime]):
        super().__init__()
        self.settings, self.clock = settings, clock
        self.max_wait = parse_duration(settings.max_wait, "[linkedin].max_wait")
        self.author = author_urn(settings.organization or "")
        self.api = JsonApi("LinkedIn", settings.api_url, settings.timeout,
                           {"Authorization": f"Bearer {token}", "LinkedIn-Version": settings.api_version,
                            "X-Restli-Protocol-Version": "2.0.0"}, [token])

    def create(self, post: Post, reply_to: Thread | None, key: PostKey) -> PostOutcome:
        body = {"author": self.author, "commentary": little_text(post.text), "visibility": "PUBLIC",
                "distribution": {"feedDistribution": "MAIN_FEED", "targetEntities": [],
                                 "thirdPartyDistributionChannels": []},
                "lifecycleState": "PUBLISHED", "isReshareDisabledByAuthor": False}
        card = post.card or {}
        if card.get("uri"):
            body["content"] = {"article": {"source": card["uri"], "title": card.get("title", ""),
                                           "description": card.get("description", "")}}
        reply = self.api.call("POST", "/rest/posts", json=body, takes_effect=True)
        if isinstance(reply, PostOutcome):
            return reply
        status, now = reply.status_code, self.clock()
        urn = reply.headers.get("x-restli-id") or body_of(reply).get("id")
        if status == 201 and urn:
            return PostOutcome("sent", remote_id=str(urn), reply=f"LinkedIn post {urn}")
        if status in (200, 201):
            return PostOutcome("unknown", reply="LinkedIn accepted the post but returned no URN")
        text = self.api.line(f"{status} from LinkedIn: {body_of(reply).get('message') or reply.reason_phrase}")
        if status == 422 and "duplicate" in text.lower():
            found, _ = self.lookup(post, key)
            return found or PostOutcome("sent", found=True, reply=f"{text} (so the page already has it)")
        if status == 429:
            midnight = datetime.combine(now.astimezone(timezone.utc).date() + timedelta(days=1), time(), timezone.utc)
            retry_at = midnight
            if reply.headers.get("retry-after"):
                try:
                    retry_at = now + timedelta(seconds=float(reply.headers["retry-after"]))
                except ValueError:
                    pass
            return PostOutcome("rate_limited", retry_at=retry_at, reply=text)
        if status == 426:  # nothing was posted: the post stays planned until the setting names a live version
            return PostOutcome("retry", reply=f"{text}; LinkedIn no longer serves LinkedIn-Version"
                                              f" {self.settings.api_version}: set [linkedin].api_version to a current version"
                                              " (YYYYMM, https://learn.microsoft.com/linkedin/marketing/versioning)")
        if status in (401, 403):
            return PostOutcome("failed", reply=f"{text}; check {TOKEN} (60-day token, w_organization_social)")
        if status >= 500:
            return PostOutcome("unknown", reply=f"{text}; the next run reads the page back before anything is retried")
        return PostOutcome("failed", reply=text)

    def lookup(self, post: Post, key: PostKey) -> tuple[PostOutcome | None, bool]:
        reply = self.api.call("GET", f"/rest/posts?q=author&author={quote(self.author, safe='')}&count=20",
                              takes_effect=False)
        if isinstance(reply, PostOutcome) or reply.status_code != 200:
            return None, False
        commentary = little_text(post.text)
        for item in body_of(reply).get("elements") or []:
            if isinstance(item, dict) and item.get("commentary") == commentary and item.get("id"):
                return PostOutcome("sent", remote_id=str(item["id"]), found=True, reply=f"already posted as {item['id']}"), True
        return None, True


SPEC = ChannelSpec(name="linkedin", kind="social", network="linkedin", settings_cls=LinkedInSettings,
                   factory=token_factory("linkedin", TOKEN, "organization", LinkedInNetwork),
                   posts=PostRules(length=utf16_length, limit=LIMIT, card=True, thread="lead"))
