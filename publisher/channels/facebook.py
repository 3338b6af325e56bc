"""Facebook Page through the Graph API (httpx: Meta's own Python SDK, facebook-sdk, is unmaintained).

What we implement, Graph API v25.0 (`[facebook].api_version`):

- `POST /{version}/{page-id}/feed` with `message` and `link` (the lead article, shown by Facebook as a
  link preview), authenticated with a Page access token (`PUBLISHER_FACEBOOK_PAGE_TOKEN`, sent as
  `Authorization: Bearer`, never in a URL). The reply is `{"id": "<page-id>_<post-id>"}`.
- `GET /{version}/{page-id}/feed?fields=id,message,permalink_url` reads the Page's latest posts back.
- Errors and throttling as channels/graph.py describes (codes 4, 17, 32, 613, 80001 wait for the
  `X-Business-Use-Case-Usage` estimate; 190 and 200-299 are the token or its permissions); code 506
  "duplicate status message" means the Page already has this exact post.

Exactly once: the Page feed has no idempotency key. A post whose reply never came back (or a 5xx) is
`unknown`; the next run reads the Page's feed back: a post with the same message is found already
posted, and when the whole list was read without it, the post is sent again (a failed read leaves it
unknown for `--resend-unknown`).

A feed has no threads: in "thread" mode the Page gets the lead post only (PostRules.thread = "lead").
Length: a Page post takes 63,206 characters; we count UTF-16 code units, which never undercounts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from publisher.channels import ChannelSpec, PostRules, graph
from publisher.channels.counting import utf16_length
from publisher.channels.posting import PostKey, PostOutcome, Thread
from publisher.channels.social import token_factory
from publisher.channels.transport import body_of
from publisher.models import Post

TOKEN = "PUBLISHER_FACEBOOK_PAGE_TOKEN"
LIMIT = 63_206
DUPLICATE = 506


@dataclass(frozen=True)
class FacebookSettings(graph.GraphSettings):
    """The [facebook] table of settings.toml."""

    api_url: str = "https://graph.facebook.com"
    api_version: str = "v25.0"
    page_id: str | None = None  # the Page's numeric id; required in live mode


class FacebookNetwork(graph.GraphNetwork):
    """Posts to a Page feed; translates Graph replies into Outcomes in this one place."""

    channel = "facebook"
    network = "facebook"

    title = "Facebook"

    def __init__(self, settings: FacebookSettings, token: str, clock: Callable[[], datetime]):
        super().__init__(settings, token, clock)
        self.feed = f"/{settings.page_id}/feed"

    def create(self, post: Post, reply_to: Thread | None, key: PostKey) -> PostOutcome:
        data = {"message": post.text}
        link = (post.card or {}).get("uri") or (post.links[0] if post.links else None)
        if link:
            data["link"] = link
        reply = self.api.call("POST", self.feed, data=data, takes_effect=True)
        if isinstance(reply, PostOutcome):
            return reply
        if reply.status_code == 200 and body_of(reply).get("id"):
            post_id = str(body_of(reply)["id"])
            return PostOutcome("sent", remote_id=post_id, reply=f"Page post {post_id}")
        if reply.status_code == 200:
            return PostOutcome("unknown", reply="Facebook accepted the post but returned no id")
        if graph.error_of(reply).code == DUPLICATE:
            found, _ = self.lookup(post, key)
            return found or PostOutcome("sent", found=True, reply=self.api.line(
                f"Facebook refused it as a duplicate, so the Page already has it (id unknown): {graph.error_of(reply)}"))
        return graph.failure(reply, self.api, self.clock(), takes_effect=True, token=TOKEN)

    def lookup(self, post: Post, key: PostKey) -> tuple[PostOutcome | None, bool]:
        return graph.find_text(self.api, (self.feed,), "message", post.text, "Page post", link="permalink_url")


SPEC = ChannelSpec(name="facebook", kind="social", network="facebook", settings_cls=FacebookSettings,
                   factory=token_factory("facebook", TOKEN, "page_id", FacebookNetwork),
                   posts=PostRules(length=utf16_length, limit=LIMIT, card=True, thread="lead"))
