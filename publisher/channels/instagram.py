"""Instagram professional account through the Graph API's content publishing (httpx: there is no
maintained Python client for it).

What we implement, Instagram Graph API v25.0 with Facebook Login (`[instagram].api_version`; an
Instagram-Login token works the same against `api_url = "https://graph.instagram.com"`):

- `GET /{ig-user-id}/content_publishing_limit?fields=quota_usage,config` before publishing: an
  account may publish a limited number of posts through the API in a moving 24 hours (`quota_total`;
  50 today); at the limit the post waits (rate limited) instead of failing.
- an image post: `POST /{ig-user-id}/media` with `image_url` (the lead article's image, a public
  JPEG URL that Instagram downloads itself) and `caption` -> a container id;
- a carousel for a thread of several stories: one `POST /{ig-user-id}/media` per image with
  `is_carousel_item=true`, then `POST /{ig-user-id}/media` with `media_type=CAROUSEL`, `children`
  (the item ids, 2 to 10) and the `caption`;
- `GET /{container-id}?fields=status_code` polled until FINISHED (IN_PROGRESS while Instagram fetches
  the image; ERROR or EXPIRED fail the post), every `[instagram].poll_every` for at most `poll_for`;
- `POST /{ig-user-id}/media_publish` with `creation_id` -> the media id: the only call that posts.
- `GET /{ig-user-id}/media?fields=id,caption,permalink` reads the latest posts back.
Errors and throttling as channels/graph.py describes; code 9 subcode 2207042 (publishing limit
reached) waits like a rate limit.

Captions: at most 2,200 characters and 30 hashtags (more and Instagram refuses the post); links in a
caption are not clickable, so the stock template `posts/instagram.txt` leaves the link out. Length is
counted in UTF-16 code units (never less than Instagram's count). Instagram only takes posts with an
image: a post whose articles have none fails with that reason.

Exactly once: containers publish nothing, so a failed container step is simply tried again. A
publish whose reply never came back (or a 5xx) is `unknown`; the next run reads the account's media
back: a post with the same caption is found already posted, and when the list was read without it
the post is published again (a failed read leaves it unknown for `--resend-unknown`).
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

TOKEN = "PUBLISHER_INSTAGRAM_ACCESS_TOKEN"
LIMIT = 2200
MAX_HASHTAGS = 30
MAX_CAROUSEL = 10
PUBLISHING_LIMIT = (9, 2207042)  # code, subcode: the account reached its API publishing limit


@dataclass(frozen=True)
class InstagramSettings(graph.ContainerSettings):
    """The [instagram] table of settings.toml."""

    api_url: str = "https://graph.facebook.com"
    api_version: str = "v25.0"
    user_id: str | None = None  # the Instagram professional account's id (IG User id); required in live mode


class InstagramNetwork(graph.GraphNetwork):
    """Publishes through media containers; translates Graph replies into Outcomes in this one place."""

    channel = "instagram"
    network = "instagram"

    title = "Instagram"

    def __init__(self, settings, token: str, clock: Callable[[], datetime]):  # noqa: ANN001
        super().__init__(settings, token, clock)
        self.user = f"/{settings.user_id}"

    def create(self, post: Post, reply_to: Thread | None, key: PostKey) -> PostOutcome:
        images = list(post.images or ([post.image] if post.image else []))[:MAX_CAROUSEL]
        if not images:
            return PostOutcome("failed", reply="Instagram only takes posts with an image, and no article of this post has one")
        full = graph.over_quota(self.api, f"{self.user}/content_publishing_limit", self.clock())
        if full is not None:
            return full
        if len(images) == 1:
            made = self._container({"image_url": images[0], "caption": post.text})
        else:
            children = []
            for url in images:
                child = self._container({"image_url": url, "is_carousel_item": "true"})
                if isinstance(child, PostOutcome):
                    return child
                children.append(child)
            made = self._container({"media_type": "CAROUSEL", "children": ",".join(children), "caption": post.text})
        if isinstance(made, PostOutcome):
            return made
        return self._publish(made, len(images))

    def _container(self, data: dict[str, str]) -> str | PostOutcome:
        """A ready container's id (created, then polled until FINISHED), or what stopped it."""
        reply = self.api.call("POST", f"{self.user}/media", data=data, takes_effect=False)
        if isinstance(reply, PostOutcome):
            return reply
        if reply.status_code != 200 or not body_of(reply).get("id"):
            return self._failure(reply, takes_effect=False)
        container = str(body_of(reply)["id"])
        waited = graph.wait_ready(self.api, container, "status_code", every=self.every, patience=self.patience,
                                  now=self.clock(), token=TOKEN)
        return waited or container

    def _publish(self, container: str, n_images: int) -> PostOutcome:
        reply = self.api.call("POST", f"{self.user}/media_publish", data={"creation_id": container}, takes_effect=True)
        if isinstance(reply, PostOutcome):
            return reply
        media_id = body_of(reply).get("id") if reply.status_code == 200 else None
        if media_id:
            what = f"carousel of {n_images} images" if n_images > 1 else "image post"
            return PostOutcome("sent", remote_id=str(media_id), reply=f"Instagram {what} {media_id}")
        if reply.status_code == 200:
            return PostOutcome("unknown", reply="Instagram accepted the publish but returned no media id")
        return self._failure(reply, takes_effect=True)

    def _failure(self, reply, takes_effect: bool) -> PostOutcome:  # noqa: ANN001 - an httpx.Response
        err = graph.error_of(reply)
        if (err.code, err.subcode) == PUBLISHING_LIMIT:
            return PostOutcome("rate_limited", retry_at=self.clock() + graph.ROLLING_WINDOW,
                               reply=self.api.line(f"{err} from Instagram (publishing limit of the last 24 hours)"))
        return graph.failure(reply, self.api, self.clock(), takes_effect=takes_effect, token=TOKEN)

    def lookup(self, post: Post, key: PostKey) -> tuple[PostOutcome | None, bool]:
        return graph.find_text(self.api, (f"{self.user}/media",), "caption", post.text, "Instagram media")


SPEC = ChannelSpec(name="instagram", kind="social", network="instagram", settings_cls=InstagramSettings,
                   factory=token_factory("instagram", TOKEN, "user_id", InstagramNetwork),
                   posts=PostRules(length=utf16_length, limit=LIMIT, thread="carousel", max_hashtags=MAX_HASHTAGS,
                                   max_images=MAX_CAROUSEL))
