"""Threads through its publishing API (httpx: Meta publishes no Python client for it).

What we implement, Threads API v1.0 (`[threads].api_version`, host graph.threads.net):

- `GET /{threads-user-id}/threads_publishing_limit?fields=quota_usage,config,reply_quota_usage,reply_config`
  before publishing: 250 posts and 1,000 replies per moving 24 hours; at the limit the post waits.
- `POST /{threads-user-id}/threads` with `media_type=TEXT` and `text` (or `media_type=IMAGE` with
  `image_url` when `[threads].images` is on), and `reply_to_id` for the posts after the first of a
  thread -> a container id;
- `GET /{container-id}?fields=status,error_message` polled until FINISHED (IN_PROGRESS while Threads
  processes it; ERROR or EXPIRED fail the post);
- `POST /{threads-user-id}/threads_publish` with `creation_id` -> the post id: the only call that posts.
- `GET /{threads-user-id}/threads` and `/replies` (`fields=id,text,permalink`) read the account back.
The token (`PUBLISHER_THREADS_ACCESS_TOKEN`, with threads_basic and threads_content_publish) goes in
an `Authorization: Bearer` header. Errors and throttling follow the Graph API (channels/graph.py).

Threads: a thread is a reply chain, each post replying to the one before. Length: 500 characters a
post; Threads does not define a character, so we count UTF-16 code units (an emoji 2), never less.

Exactly once: as for Instagram, containers publish nothing; an unclear publish is `unknown` until the
next run reads the account's posts and replies back (same text: found already posted; a complete
read without it: published again; a failed read: left for `--resend-unknown`).
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

TOKEN = "PUBLISHER_THREADS_ACCESS_TOKEN"
LIMIT = 500
DAILY_POSTS = 250  # API-published posts per 24 hours (replies have their own 1,000)


@dataclass(frozen=True)
class ThreadsSettings(graph.ContainerSettings):
    """The [threads] table of settings.toml."""

    api_url: str = "https://graph.threads.net"
    api_version: str = "v1.0"
    user_id: str = "me"  # the Threads user id; "me" is the token's own account
    images: bool = False  # post the lead article's image (an IMAGE container) instead of a text post with a link preview
    poll_every: str = "2s"


class ThreadsNetwork(graph.GraphNetwork):
    """Publishes text (or image) containers as a reply chain; Graph replies become Outcomes here."""

    channel = "threads"
    network = "threads"
    daily_limit = DAILY_POSTS

    title = "Threads"

    def __init__(self, settings, token: str, clock: Callable[[], datetime]):  # noqa: ANN001
        super().__init__(settings, token, clock)
        self.user = f"/{settings.user_id}"

    def create(self, post: Post, reply_to: Thread | None, key: PostKey) -> PostOutcome:
        parent = reply_to.parent if reply_to else None
        usage, config = ("reply_quota_usage", "reply_config") if parent else ("quota_usage", "config")
        full = graph.over_quota(self.api, f"{self.user}/threads_publishing_limit", self.clock(), usage, config)
        if full is not None:
            return full
        data = {"media_type": "TEXT", "text": post.text}
        if self.settings.images and post.image:
            data.update(media_type="IMAGE", image_url=post.image)
        if parent:
            data["reply_to_id"] = parent
        reply = self.api.call("POST", f"{self.user}/threads", data=data, takes_effect=False)
        if isinstance(reply, PostOutcome):
            return reply
        if reply.status_code != 200 or not body_of(reply).get("id"):
            return graph.failure(reply, self.api, self.clock(), takes_effect=False, token=TOKEN)
        container = str(body_of(reply)["id"])
        waited = graph.wait_ready(self.api, container, "status", every=self.every, patience=self.patience,
                                  now=self.clock(), token=TOKEN)
        if waited is not None:
            return waited
        reply = self.api.call("POST", f"{self.user}/threads_publish", data={"creation_id": container}, takes_effect=True)
        if isinstance(reply, PostOutcome):
            return reply
        post_id = body_of(reply).get("id") if reply.status_code == 200 else None
        if post_id:
            return PostOutcome("sent", remote_id=str(post_id), reply=f"Threads {'reply' if parent else 'post'} {post_id}")
        if reply.status_code == 200:
            return PostOutcome("unknown", reply="Threads accepted the publish but returned no post id")
        return graph.failure(reply, self.api, self.clock(), takes_effect=True, token=TOKEN)

    def lookup(self, post: Post, key: PostKey) -> tuple[PostOutcome | None, bool]:
        return graph.find_text(self.api, (f"{self.user}/threads", f"{self.user}/replies"), "text", post.text,
                               "Threads post")


SPEC = ChannelSpec(name="threads", kind="social", network="threads", settings_cls=ThreadsSettings,
                   factory=token_factory("threads", TOKEN, "user_id", ThreadsNetwork),
                   posts=PostRules(length=utf16_length, limit=LIMIT))
