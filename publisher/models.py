"""The values that flow through the pipeline: feeds -> Article -> Edition -> RenderedEdition -> Delivery.

Frozen dataclasses, no I/O. Every datetime here is timezone-aware.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from datetime import datetime

# Personal tokens in a RenderedEdition's HTML and text: the email channel fills them in per recipient,
# in the finished MIME bytes (render writes them, channels/email/message.py replaces them).
UNSUBSCRIBE_TOKEN = "%%UNSUBSCRIBE_URL%%"
EMAIL_TOKEN = "%%EMAIL%%"
PREFERENCES_TOKEN = "%%PREFERENCES_URL%%"  # the reader's preferences page (series, unsubscribe from all)


@dataclass(frozen=True)
class Article:
    """One feed item, normalised and cleaned (see ingest/entries.py)."""

    id: str  # guid, else canonical link
    link: str  # canonical absolute http(s) URL, tracking parameters removed
    title: str  # plain text, no CR/LF, entities decoded
    summary: str  # plain text, boilerplate ("Lire la suite", "[…]") removed
    published: datetime  # aware, UTC
    source: str = ""  # the feed source it came from
    summary_html: str = ""  # sanitised HTML (allow-list), may be empty
    image: str | None = None  # absolute http(s) URL
    author: str | None = None
    categories: tuple[str, ...] = ()
    thumbnail: str | None = None  # a small size of the image the feed offers (WordPress 218x150), for lists

    def content_hash(self) -> str:
        """Hash of what a reader sees; a change means the article was edited."""
        h = hashlib.sha256()
        for part in (self.link, self.title, self.summary, self.summary_html, self.image or "",
                     self.author or "", "\x1f".join(self.categories), self.published.isoformat()):
            h.update(part.encode("utf-8"))
            h.update(b"\x00")
        if self.thumbnail:  # only when present, so articles without one keep the hash they were stored with
            h.update(self.thumbnail.encode("utf-8"))
        return h.hexdigest()


@dataclass(frozen=True)
class Edition:
    """What one campaign sends for one window: e.g. `endurance` for `2026-W47`."""

    campaign: str
    id: str  # e.g. "2026-W47"
    window_start: datetime  # aware, in the campaign's time zone (inclusive)
    window_end: datetime  # aware, in the campaign's time zone (exclusive)
    slot: datetime  # when it is due to go out (aware, campaign time zone)
    articles: tuple[Article, ...] = ()  # in display order; articles[0] is the lead
    series: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False, compare=False)
    # series: article id -> the campaign's series it matched, for badges and hashtags

    @property
    def key(self) -> str:
        """The idempotency key of every delivery of this edition."""
        return f"{self.campaign}/{self.id}"

    @property
    def lead(self) -> Article | None:
        return self.articles[0] if self.articles else None


@dataclass(frozen=True)
class Post:
    """One social post as it will be sent; position 0 is the lead, later ones reply in a thread."""

    network: str  # "x", "mastodon", "bluesky"
    position: int
    text: str
    length: int  # counted by the network's own rule (weighted, characters, graphemes)
    limit: int
    links: tuple[str, ...] = ()
    image: str | None = None  # URL of an image to attach (lead article thumbnail), optional
    article_id: str | None = None
    card: dict[str, str] | None = None  # Bluesky external embed: uri, title, description, thumb
    language: str = "fr"
    images: tuple[str, ...] = ()  # a carousel's image URLs in order (Instagram thread), when there are several


@dataclass(frozen=True)
class LintIssue:
    """A problem found in a rendered email: shown in preview, fatal with --strict."""

    code: str  # e.g. "size", "img-no-width", "img-no-alt", "css-unsupported", "link-scheme"
    message: str


@dataclass(frozen=True)
class RenderedEdition:
    """The finished bytes of an edition: preview shows exactly these; send sends them."""

    edition: Edition
    subject: str  # one line, no CR/LF
    preheader: str
    html: str  # CSS already inlined
    text: str
    posts: dict[str, tuple[Post, ...]] = field(default_factory=dict, hash=False)
    lint: tuple[LintIssue, ...] = ()

    @property
    def content_hash(self) -> str:
        h = hashlib.sha256()
        for part in (self.edition.key, self.subject, self.preheader, self.html, self.text):
            h.update(part.encode("utf-8"))
            h.update(b"\x00")
        for network in sorted(self.posts):
            for post in self.posts[network]:
                h.update(f"{network}:{post.position}:{post.text}:{post.image or ''}".encode("utf-8"))
                h.update(b"\x00")
        return h.hexdigest()


class State(str, enum.Enum):
    """Ledger states: planned -> sending -> sent | failed | unknown."""

    PLANNED = "planned"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"  # the request may have taken effect; never retried without the user


@dataclass(frozen=True)
class Delivery:
    """One ledger row: one (edition, recipient) or one (edition, channel, post position)."""

    edition_key: str
    channel: str
    target: str  # email address, or "post:N" for social posts
    state: State
    remote_id: str | None = None  # Message-ID, tweet id, status id, at:// uri
    reply: str | None = None  # the server's reply or the error text
    attempts: int = 0
    updated_at: datetime | None = None


# -- JSON form of a RenderedEdition, as frozen in the store ------------------------------------


def _article_to_dict(a: Article) -> dict:
    return {"id": a.id, "link": a.link, "title": a.title, "summary": a.summary, "summary_html": a.summary_html,
            "published": a.published.isoformat(), "source": a.source, "image": a.image, "author": a.author,
            "categories": list(a.categories), "thumbnail": a.thumbnail}


def _article_from_dict(d: dict) -> Article:
    return Article(**{**d, "published": datetime.fromisoformat(d["published"]), "categories": tuple(d["categories"])})


def rendered_to_dict(r: RenderedEdition) -> dict:
    """A RenderedEdition as plain JSON-able data; rendered_from_dict(rendered_to_dict(r)) == r."""
    e = r.edition
    return {
        "edition": {"campaign": e.campaign, "id": e.id, "window_start": e.window_start.isoformat(),
                    "window_end": e.window_end.isoformat(), "slot": e.slot.isoformat(),
                    "articles": [_article_to_dict(a) for a in e.articles],
                    "series": {k: list(v) for k, v in e.series.items()}},
        "subject": r.subject, "preheader": r.preheader, "html": r.html, "text": r.text,
        "posts": {n: [{**p.__dict__, "links": list(p.links)} for p in posts] for n, posts in r.posts.items()},
        "lint": [{"code": i.code, "message": i.message} for i in r.lint],
    }


def rendered_from_dict(d: dict) -> RenderedEdition:
    e = d["edition"]
    edition = Edition(campaign=e["campaign"], id=e["id"], window_start=datetime.fromisoformat(e["window_start"]),
                      window_end=datetime.fromisoformat(e["window_end"]), slot=datetime.fromisoformat(e["slot"]),
                      articles=tuple(_article_from_dict(a) for a in e["articles"]),
                      series={k: tuple(v) for k, v in e["series"].items()})
    posts = {n: tuple(Post(**{**p, "links": tuple(p["links"]), "images": tuple(p.get("images", ()))}) for p in ps)
             for n, ps in d["posts"].items()}
    return RenderedEdition(edition=edition, subject=d["subject"], preheader=d["preheader"], html=d["html"],
                           text=d["text"], posts=posts, lint=tuple(LintIssue(**i) for i in d["lint"]))
