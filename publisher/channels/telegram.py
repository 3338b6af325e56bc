"""Telegram channel through the Bot API (httpx: python-telegram-bot is asyncio-only and would need an
event loop per post; the two methods we call are plain HTTPS).

What we implement, Bot API 7.0 and later (https://core.telegram.org/bots/api), as a bot that is an
administrator of the channel allowed to post (`PUBLISHER_TELEGRAM_BOT_TOKEN`, from @BotFather):

- `POST /bot<token>/sendMessage` with `chat_id` (`[telegram].chat_id`: `@channelname` or the
  numeric id), `text`, `parse_mode: HTML` and `link_preview_options` (`url`: the post's link, large
  media preferred): a message with a link preview;
- `POST /bot<token>/sendPhoto` with `photo` (the lead article's image URL, which Telegram downloads)
  and the text as `caption` in the same HTML mode, when `[telegram].photos` is on and the post has an
  image; if Telegram cannot fetch the image (400), the post goes as a message instead;
- `reply_parameters.message_id` for the posts after the first of a thread: a reply chain.
Replies are `{"ok": true, "result": {"message_id": ...}}` or `{"ok": false, "error_code",
"description", "parameters": {"retry_after"}}`.

HTML parse mode: the post's text is plain text, so `&`, `<` and `>` are written as entities and each
link becomes `<a href="...">` with its URL escaped (quotes included): nothing from a feed can open a
tag. Lengths: a message takes 4,096 characters and a caption 1,024 after entity parsing (the visible
text), counted by Telegram in UTF-16 code units; posts are composed within 1,024 so any post can go
as a photo.

Rate limits (Bot FAQ): about one message a second in a chat and 20 a minute in a group or channel, so
posts to the channel are spaced by at least 3 seconds; a 429 carries `parameters.retry_after` (seconds),
which we wait for. 401/404 mean a wrong token, 403 a bot that may not post in the chat, other 400s a
refused message: failed. A 5xx or a reply that never came is `unknown`: the Bot API cannot read a
channel's history back and has no idempotency key, so only `--resend-unknown` sends it again.
The token is part of every URL, so it is scrubbed from every message we keep.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from publisher.channels import ChannelSpec, PostRules
from publisher.channels.counting import url_spans, utf16_length
from publisher.channels.posting import Plain, PostKey, PostOutcome, Thread
from publisher.channels.social import token_factory
from publisher.channels.transport import ApiSettings, JsonApi, body_of
from publisher.config import parse_duration
from publisher.models import Post

TOKEN = "PUBLISHER_TELEGRAM_BOT_TOKEN"
CAPTION_LIMIT = 1024
MIN_INTERVAL = timedelta(seconds=3)  # 20 messages a minute in a group or channel


@dataclass(frozen=True)
class TelegramSettings(ApiSettings):
    """The [telegram] table of settings.toml."""

    api_url: str = "https://api.telegram.org"
    chat_id: str | None = None  # "@channelname" or "-100…"; required in live mode
    photos: bool = True  # send a post with an image as a photo with its caption


def to_html(text: str) -> str:
    """A plain-text post in Telegram's HTML parse mode: text escaped, links as anchors."""
    out, pos = [], 0
    for a, b in url_spans(text):
        url = text[a:b]
        out.append(html.escape(text[pos:a], quote=False) + f'<a href="{html.escape(url)}">{html.escape(url, quote=False)}</a>')
        pos = b
    return "".join(out) + html.escape(text[pos:], quote=False)


class TelegramNetwork(Plain):
    """Posts through the Bot API; translates its replies into Outcomes in this one place."""

    channel = "telegram"
    network = "telegram"
    min_interval = MIN_INTERVAL

    def __init__(self, settings: TelegramSettings, token: str, clock: Callable[[], datetime]):
        self.settings, self.clock = settings, clock
        self.max_wait = parse_duration(settings.max_wait, "[telegram].max_wait")
        self.api = JsonApi("Telegram", f"{settings.api_url}/bot{token}", settings.timeout, {}, [token])

    def create(self, post: Post, reply_to: Thread | None, key: PostKey) -> PostOutcome:
        body: dict = {"chat_id": self.settings.chat_id, "parse_mode": "HTML"}
        if reply_to and reply_to.parent:
            body["reply_parameters"] = {"message_id": int(reply_to.parent)}
        note = ""
        if self.settings.photos and post.image:
            reply = self.api.call("POST", "/sendPhoto", json={**body, "photo": post.image, "caption": to_html(post.text)},
                                  takes_effect=True)
            if isinstance(reply, PostOutcome) or reply.status_code != 400:
                return self._outcome(reply, "photo")
            note = f" (as a message: the photo was refused: {self._description(reply)})"
        link = (post.card or {}).get("uri") or (post.links[0] if post.links else None)
        message = {**body, "text": to_html(post.text),
                   "link_preview_options": {"url": link, "prefer_large_media": True} if link else {"is_disabled": True}}
        return self._outcome(self.api.call("POST", "/sendMessage", json=message, takes_effect=True), "message", note)

    def _outcome(self, reply, what: str, note: str = "") -> PostOutcome:  # noqa: ANN001 - httpx.Response | PostOutcome
        if isinstance(reply, PostOutcome):
            return reply
        data = body_of(reply)
        result = data.get("result") if data.get("ok") else None
        if reply.status_code == 200 and isinstance(result, dict) and result.get("message_id"):
            message_id = str(result["message_id"])
            return PostOutcome("sent", remote_id=message_id, reply=f"Telegram {what} {message_id}{note}")
        text = f"{reply.status_code} from Telegram: {self._description(reply)}"
        if reply.status_code == 429:
            wait = (data.get("parameters") or {}).get("retry_after")
            retry_at = self.clock() + timedelta(seconds=float(wait)) if isinstance(wait, (int, float)) else None
            return PostOutcome("rate_limited", retry_at=retry_at, reply=text)
        if reply.status_code in (401, 404):
            return PostOutcome("failed", reply=f"{text}; check {TOKEN}")
        if reply.status_code == 403:
            return PostOutcome("failed", reply=f"{text}; make the bot an administrator of {self.settings.chat_id}"
                                               " allowed to post messages")
        if reply.status_code >= 500 or reply.status_code == 200:
            return PostOutcome("unknown", reply=f"{text}; Telegram may have posted it")
        return PostOutcome("failed", reply=text)

    def _description(self, reply) -> str:  # noqa: ANN001 - an httpx.Response
        return self.api.line(body_of(reply).get("description") or reply.reason_phrase)


SPEC = ChannelSpec(name="telegram", kind="social", network="telegram", settings_cls=TelegramSettings,
                   factory=token_factory("telegram", TOKEN, "chat_id", TelegramNetwork),
                   posts=PostRules(length=utf16_length, limit=CAPTION_LIMIT))
