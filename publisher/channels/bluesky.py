"""Bluesky through the atproto SDK.

Exactly once: every post is created with a record key derived from the ledger key (a valid TID
built from the edition's slot and a hash), so a repeat cannot make a second post: the PDS refuses a
second record under the same key. When a create fails or its outcome is unknown, `getRecord` on
that key tells whether the post exists (and its text proves it is ours). So an `unknown` Bluesky
row is retried by the next run without --resend-unknown: the retry either finds it or makes it.

Record keys are TIDs (microseconds, then a clock id): the posts of a thread get increasing keys in
thread order, so a reply never sorts before its parent.

Links become `app.bsky.richtext.facet#link` facets with UTF-8 byte offsets (French accents before a
link shift them); a link a template leaves in the text is shown as the Bluesky app shows it
(`host/path...`, PostRules.link_text) with the facet pointing to the full URL. Mentions
(`[social].mentions`, `@handle.domain`) become `#mention` facets with the DID that
`com.atproto.identity.resolveHandle` gives (a handle that does not resolve stays text); hashtags become
tag facets; the lead article becomes an external embed card.

Length: grapheme clusters of the text as shown, limit 300.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import urlsplit

from publisher.channels import ChannelDisabled, ChannelSpec, PostRules
from publisher.channels.counting import graphemes
from publisher.channels.posting import Plain, position, PostKey, PostOutcome, Thread
from publisher.channels.social import SocialChannel, outbox_channel
from publisher.channels.transport import fetch_image, httpx_not_sent, redact, reply_line, reset_time
from publisher.config import parse_duration, secret
from publisher.config.schema import check_at_least, check_url
from publisher.errors import DeliveryError
from publisher.models import Delivery, Post

if TYPE_CHECKING:
    from atproto import models

    from publisher.config import Campaign

PASSWORD = "PUBLISHER_BLUESKY_APP_PASSWORD"
HANDLE = "PUBLISHER_BLUESKY_HANDLE"
LIMIT = 300
MAX_BLOB_BYTES = 1_000_000  # Bluesky's limit for an embed thumbnail
_B32 = "234567abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class BlueskySettings:
    """The [bluesky] table of settings.toml."""

    service_url: str = "https://bsky.social"  # the PDS (or entryway) to log in to
    handle: str | None = None  # the account, e.g. "endurance-info.bsky.social"; PUBLISHER_BLUESKY_HANDLE wins
    card_thumbnail: bool = True  # fetch the lead article's image and upload it as the card's thumbnail
    timeout: float = 30.0
    max_wait: str = "5m"  # longest 429/spacing wait inside one run; a longer one leaves the post pending

    def _check(self, where: str) -> None:
        check_url(self.service_url, f"{where}.service_url", "https://bsky.social")
        parse_duration(self.max_wait, f"{where}.max_wait")
        check_at_least(self, where, 0.1, "timeout", meaning=" (seconds)")


def bluesky_length(text: str) -> int:
    """Bluesky's count: grapheme clusters of the text as written, links included (300 max)."""
    return graphemes(text)


def record_key(key: PostKey) -> str:
    """A TID that is the same for the same post in every run: the edition's slot, the post's place in
    the thread, and a hash of the edition and network.

    A TID is microseconds since the epoch (then a 10-bit clock id), and clients sort a repo's records by
    it: the posts of a thread get increasing keys in thread order (the position counts microseconds),
    and a reply never sorts before its parent. The hash picks the millisecond inside the slot's second
    and the clock id, so two campaigns due at the same minute still get different keys."""
    h = int(hashlib.sha256(f"{key.edition_key}\x1f{key.network}".encode()).hexdigest()[:16], 16)
    micros = int(key.slot.timestamp()) * 1_000_000 + ((h >> 10) % 1000) * 1000 + min(position(key.target), 999)
    value = (micros << 10) | (h & 0x3FF)
    return "".join(_B32[(value >> (5 * i)) & 31] for i in reversed(range(13)))


def record_key_before_thread_order(key: PostKey) -> str:
    """The record key versions before thread-ordered keys gave a post: an `unknown` row such a version
    left is looked for under it too, so the upgrade cannot post it a second time under the new key."""
    h = int(key.digest[:16], 16)
    micros = int(key.slot.timestamp()) * 1_000_000 + (h >> 10) % 1_000_000
    value = (micros << 10) | (h & 0x3FF)
    return "".join(_B32[(value >> (5 * i)) & 31] for i in reversed(range(13)))


def short_link(url: str) -> str:
    """A link as the Bluesky app writes it in a post: host and the start of the path ("host/path..."),
    the full URL kept in the link facet (the app's toShortUrl: a path over 15 characters is cut to 13 and "...")."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return url
    path = ("" if parts.path == "/" else parts.path) + (f"?{parts.query}" if parts.query else "") + \
        (f"#{parts.fragment}" if parts.fragment else "")
    return parts.netloc + (path[:13] + "..." if len(path) > 15 else path)


_URL = re.compile(r"https?://[^\s<>\"]+")
_TAG = re.compile(r"(?<!\S)#(\w+)")
# a handle is a domain name: "@fiawec.bsky.social", not "@FIAWEC" (an X account, left as text)
MENTION = re.compile(r"(?<![\w@/.])@([a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)+)")


def facets(text: str, links: tuple[str, ...] = (), dids: dict[str, str] | None = None) -> list[models.AppBskyRichtextFacet.Main]:
    """Link facets for the post's links (written in full or as the app shortens them) and any other URL
    in the text, mention facets for the handles in `dids` (handle -> DID), tag facets for hashtags;
    indexed in UTF-8 bytes as the lexicon requires."""
    from atproto import models  # here, not at the top: importing the SDK takes seconds

    spans: list[tuple[int, int, Any]] = []

    def taken(i: int, j: int) -> bool:
        return any(i < b and a < j for a, b, _ in spans)

    for link in dict.fromkeys(links):
        for shown in dict.fromkeys((link, short_link(link))):
            start = 0
            while shown and (i := text.find(shown, start)) >= 0:
                if not taken(i, i + len(shown)):
                    spans.append((i, i + len(shown), models.AppBskyRichtextFacet.Link(uri=link)))
                start = i + len(shown)
    for m in MENTION.finditer(text):
        did = (dids or {}).get(m.group(1).lower())
        if did and not taken(m.start(), m.end()):
            spans.append((m.start(), m.end(), models.AppBskyRichtextFacet.Mention(did=did)))
    for m in _URL.finditer(text):
        url = m.group(0).rstrip(".,;:!?)»")
        if url and not taken(m.start(), m.start() + len(url)):
            spans.append((m.start(), m.start() + len(url), models.AppBskyRichtextFacet.Link(uri=url)))
    for m in _TAG.finditer(text):
        if not m.group(1).isdigit() and not taken(m.start(), m.end()):
            spans.append((m.start(), m.end(), models.AppBskyRichtextFacet.Tag(tag=m.group(1))))

    def byte(i: int) -> int:
        return len(text[:i].encode("utf-8"))

    return [models.AppBskyRichtextFacet.Main(features=[feature],
                                             index=models.AppBskyRichtextFacet.ByteSlice(byte_start=byte(a), byte_end=byte(b)))
            for a, b, feature in sorted(spans, key=lambda s: s[0])]


def _ref(remote_id: str) -> models.ComAtprotoRepoStrongRef.Main:
    from atproto import models

    uri, _, cid = remote_id.partition(" ")  # remote ids are stored as "at://... cid"
    return models.ComAtprotoRepoStrongRef.Main(uri=uri, cid=cid)


class BlueskyNetwork(Plain):
    """Posts through the atproto SDK; translates its errors into Outcomes in this one place."""

    channel = "bluesky"
    network = "bluesky"
    paced = True

    def __init__(self, settings: BlueskySettings, handle: str, password: str, clock: Callable[[], datetime]):
        self.settings = settings
        self.handle = handle
        self.clock = clock
        self.max_wait = parse_duration(settings.max_wait, "[bluesky].max_wait")
        self._password = password
        self.did: str | None = None
        self._dids: dict[str, str] = {}  # handle -> DID ("" when it does not resolve)
        from atproto import Client
        from atproto_client.request import Request

        self.client = Client(base_url=settings.service_url, request=Request(timeout=settings.timeout))
        self.client.on_session_change(self._session_changed)

    def _session_changed(self, event: Any, session: Any) -> None:
        self.did = session.did

    def prepare(self, campaign: "Campaign") -> None:
        """Log in (com.atproto.server.createSession) once per run."""
        import httpx
        from atproto_client import exceptions as atx

        if self.did:
            return
        where = f"{self.handle} at {self.settings.service_url}"
        try:
            self.client.login(self.handle, self._password, fetch_bsky_profile=False)
        except (atx.UnauthorizedError, atx.BadRequestError) as exc:
            raise DeliveryError(f"login refused for {where}: {self._text(exc)}",
                                hint=f"check {PASSWORD} (an app password) and the handle") from None
        except (atx.AtProtocolError, httpx.HTTPError) as exc:
            raise DeliveryError(f"cannot log in as {where}: {self._text(exc)}",
                                hint=f"rerun 'publisher send {campaign.name}' later") from None
        if not self.did:
            raise DeliveryError(f"login as {where} returned no account id")

    def retry_unknown(self, row: Delivery, now: datetime) -> bool:
        return True  # the record key makes a repeat either find the post or create it once

    def create(self, post: Post, reply_to: Thread | None, key: PostKey) -> PostOutcome:
        import httpx
        from atproto import models
        from atproto_client import exceptions as atx

        rkey = record_key(key)
        reply = None
        if reply_to and reply_to.parent:
            reply = models.AppBskyFeedPost.ReplyRef(root=_ref(reply_to.root or reply_to.parent), parent=_ref(reply_to.parent))
        record = models.AppBskyFeedPost.Record(
            text=post.text, created_at=self.clock().astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            facets=facets(post.text, post.links, self._resolve(post.text)) or None, langs=[post.language or "fr"],
            reply=reply, embed=self._card(post))
        try:
            made = self.client.app.bsky.feed.post.create(self.did, record, rkey=rkey)
        except atx.RateLimitExceededError as exc:
            headers = exc.response.headers if exc.response is not None else None
            return PostOutcome("rate_limited", retry_at=reset_time(headers, self.clock()), reply="429 from Bluesky")
        except atx.InvokeTimeoutError as exc:
            if httpx_not_sent(exc):
                return PostOutcome("retry", reply="could not reach Bluesky (connect timeout)")
            return PostOutcome("unknown", reply=f"no reply from Bluesky after the request was sent; record key {rkey}"
                                            " lets the next run check and finish it")
        except atx.UnauthorizedError as exc:
            return PostOutcome("failed", reply=f"{self._text(exc)}; check {PASSWORD}")
        except atx.RequestErrorBase as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status is None:  # transport error
                if httpx_not_sent(exc):
                    return PostOutcome("retry", reply="could not reach Bluesky")
                return PostOutcome("unknown", reply=f"connection lost after the request was sent; record key {rkey}")
            found = self._existing(rkey, post.text)
            if found is not None:
                return found
            if status >= 500 or status == 409:
                return PostOutcome("retry", maybe_taken=True, reply=f"{self._text(exc)} (record key {rkey})")
            return PostOutcome("failed", reply=self._text(exc))
        except httpx.TransportError as exc:  # the SDK passes some transport errors through untranslated
            if httpx_not_sent(exc):
                return PostOutcome("retry", reply="could not reach Bluesky")
            return PostOutcome("unknown", reply=f"connection lost after the request was sent; record key {rkey}")
        except (atx.AtProtocolError, httpx.HTTPError) as exc:
            return PostOutcome("failed", reply=self._text(exc))
        return PostOutcome("sent", remote_id=f"{made.uri} {made.cid}", reply=made.uri)

    def _resolve(self, text: str) -> dict[str, str]:
        """The DIDs of the handles mentioned in `text` (com.atproto.identity.resolveHandle, once per run
        each); a handle that does not resolve stays plain text."""
        import httpx
        from atproto_client import exceptions as atx

        for handle in {m.group(1).lower() for m in MENTION.finditer(text)} - self._dids.keys():
            try:
                self._dids[handle] = self.client.com.atproto.identity.resolve_handle({"handle": handle}).did
            except (atx.AtProtocolError, httpx.HTTPError, ValueError):
                self._dids[handle] = ""
        return {h: d for h, d in self._dids.items() if d}

    def find(self, post: Post, key: PostKey) -> PostOutcome | None:
        found = self._existing(record_key(key), post.text)
        if found is None:  # an unknown row left by a version with the former record keys
            found = self._existing(record_key_before_thread_order(key), post.text)
        return found

    def _existing(self, rkey: str, text: str) -> PostOutcome | None:
        """After a failed create: is the post already there under its record key?"""
        import httpx
        from atproto import models
        from atproto_client import exceptions as atx

        try:
            got = self.client.com.atproto.repo.get_record(
                models.ComAtprotoRepoGetRecord.Params(repo=self.did, collection="app.bsky.feed.post", rkey=rkey))
        except (atx.AtProtocolError, httpx.HTTPError, ValueError):  # ValueError: a record the SDK cannot parse
            return None
        value = got.value
        found_text = value.get("text") if isinstance(value, dict) else getattr(value, "text", None)
        if found_text == text:
            return PostOutcome("sent", remote_id=f"{got.uri} {got.cid}", reply=f"already posted as {got.uri}", found=True)
        return PostOutcome("failed", reply=f"record key {rkey} already holds a different post ({got.uri})")

    def _card(self, post: Post) -> models.AppBskyEmbedExternal.Main | None:
        """The external embed for the lead article; the thumbnail is optional and never blocks."""
        import httpx
        from atproto import models
        from atproto_client import exceptions as atx

        card = post.card
        if not card or not card.get("uri"):
            return None
        thumb = None
        image = None
        if self.settings.card_thumbnail:
            image = fetch_image(card.get("thumb"), self.settings.timeout, MAX_BLOB_BYTES)
        if image is not None:
            try:
                thumb = self.client.upload_blob(image[0]).blob
            except (atx.AtProtocolError, httpx.HTTPError):
                thumb = None
        return models.AppBskyEmbedExternal.Main(external=models.AppBskyEmbedExternal.External(
            uri=card["uri"], title=card.get("title", ""), description=card.get("description", ""), thumb=thumb))

    def _text(self, exc: Exception) -> str:
        return reply_line(redact(str(exc) or type(exc).__name__, [self._password]))


def make(settings, channel_settings: BlueskySettings, ctx) -> SocialChannel:
    """The Bluesky channel: the outbox form, or live posting with a handle and an app password."""
    if ctx.outbox is not None:
        return outbox_channel("bluesky", ctx)
    handle = secret(HANDLE) or channel_settings.handle
    password = secret(PASSWORD)
    if not handle:
        raise ChannelDisabled(f"no account: set [bluesky].handle in {settings.source} or {HANDLE}")
    if not password:
        raise ChannelDisabled(f"missing {PASSWORD} in the environment; set it, or use"
                              f" [publisher] delivery = \"outbox\" in {settings.source}")
    return SocialChannel(BlueskyNetwork(channel_settings, handle, password, ctx.ledger.clock), ctx)  # type: ignore[arg-type]


SPEC = ChannelSpec(name="bluesky", kind="social", network="bluesky", settings_cls=BlueskySettings, factory=make,
                   posts=PostRules(length=bluesky_length, limit=LIMIT, card=True, link_text=short_link))
