"""Small local HTTP apps for the social APIs we call, on 127.0.0.1 port 0, recording every request.

Each server implements the endpoints our channels use, the way the real service behaves where it
matters (X refuses duplicate text with 403; Mastodon answers a repeated Idempotency-Key with the
status it already made; a Bluesky PDS refuses a second record under the same key). A test can queue
scripted answers per path: `Reply(429, headers=...)`, `Reply(500)`, `Reply(500, commit=True)`
(the post is made, then the answer is an error), `Normal()`, `Hang()` (no answer until the test ends), and
`Hang(commit=True)` (made, then no answer).

The fixtures at the end (`creds`, `xs`, `ms`, `bs`, `make_harness`) are shared by the social test modules, which load
this module with `pytest_plugins = ["support.social_servers"]` (tests/conftest.py is not ours to extend).
Those modules import it before pytest loads it as a plugin, too late for assertion rewriting; it holds
no assert (tests assert on what the servers recorded), so it opts out: PYTEST_DONT_REWRITE.
"""

from __future__ import annotations

import base64
import email.utils
import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from publisher.channels import DispatchContext, DispatchReport, registry
from publisher.channels.posting import PostKey
from publisher.config import Campaign, Settings, SocialSettings
from publisher.config.schema import read_table
from publisher.models import Delivery, Edition, Post, RenderedEdition
from publisher.progress import Progress
from publisher.store.db import Store
from publisher.store.ledger import Ledger

# A valid 1x1 PNG: the thumbnail every server serves at /img/thumb.png
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


@dataclass
class Reply:
    status: int
    body: Any = None  # dict/list -> JSON, bytes as is
    headers: dict[str, str] = field(default_factory=dict)
    commit: bool = False  # do the normal work first (the post exists), then answer this


@dataclass
class Normal:
    """Answer this one request the normal way (to script a failure for a later request)."""


@dataclass
class Hang:
    commit: bool = False  # make the post, then never answer


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body or b"null")

    @property
    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode("utf-8"), keep_blank_values=True)


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _serve(self) -> None:
        app: LocalApp = self.server.app  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        req = Recorded(self.command, parts.path, parse_qs(parts.query), {k.lower(): v for k, v in self.headers.items()}, body)
        status, headers, payload = app.dispatch(req)
        if status is None:  # hung: the client has given up by now
            return
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
        try:
            self.send_response(status)
            if not isinstance(payload, bytes):
                self.send_header("Content-Type", "application/json; charset=utf-8")
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def date_time_string(self, timestamp: float | None = None) -> str:  # the Date header, on the app's clock
        return email.utils.format_datetime(self.server.app.now(), usegmt=True)  # type: ignore[attr-defined]

    do_GET = do_POST = do_PUT = do_DELETE = _serve


class LocalApp:
    """A threaded HTTP server with scripted answers; subclasses implement `handle`."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.scripts: dict[tuple[str, str], deque] = defaultdict(deque)
        self.release = threading.Event()
        self.skew = timedelta(0)  # the server's clock runs this far ahead (a later run, minutes after)
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.app = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def now(self) -> datetime:
        """The server's own clock (its Date header and the times it stamps on what it makes)."""
        return datetime.now(timezone.utc) + self.skew

    def __enter__(self) -> "LocalApp":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def script(self, method: str, path: str, *answers: Reply | Hang | Normal) -> None:
        """Answer the next requests to (method, path) with these, in order, then normally again."""
        self.scripts[(method, path)].extend(answers)

    def to(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path == path]

    def dispatch(self, req: Recorded) -> tuple[int | None, dict[str, str], Any]:
        with self._lock:
            self.requests.append(req)
            queue = self.scripts.get((req.method, req.path.rstrip("/") or "/"))
            scripted = queue.popleft() if queue else None
            if scripted is None or isinstance(scripted, Normal) or getattr(scripted, "commit", False):
                normal = self.handle(req)
        if isinstance(scripted, Hang):
            self.release.wait(30)
            return None, {}, b""
        if isinstance(scripted, Reply):
            return scripted.status, scripted.headers, scripted.body if scripted.body is not None else {"error": "scripted"}
        return normal

    def handle(self, req: Recorded) -> tuple[int, dict[str, str], Any]:
        if req.method == "GET" and req.path == "/img/thumb.png":
            return 200, {"Content-Type": "image/png"}, PNG
        return 404, {}, {"error": "not found"}


class XServer(LocalApp):
    """X API v2 `POST /2/tweets` and v1.1 `POST /1.1/media/upload.json`."""

    def __init__(self) -> None:
        super().__init__()
        self.tweets: list[dict] = []

    def handle(self, req: Recorded):
        if req.method == "POST" and req.path == "/2/tweets":
            body = req.json
            if any(t["text"] == body.get("text") for t in self.tweets):
                return 403, {}, {"detail": "You are not allowed to create a Tweet with duplicate content.",
                                 "type": "about:blank", "title": "Forbidden", "status": 403}
            tweet = {"id": str(1_000_000 + len(self.tweets)), **body}
            self.tweets.append(tweet)
            return 201, {}, {"data": {"id": tweet["id"], "text": body.get("text", "")}}
        if req.method == "POST" and req.path == "/1.1/media/upload.json":
            return 200, {}, {"media_id": 710, "media_id_string": "710", "size": len(req.body)}
        return super().handle(req)


class MastodonServer(LocalApp):
    """Mastodon `GET /api/v1/instance` (and v2), `POST /api/v1/statuses`, `POST /api/v2/media`."""

    def __init__(self, max_characters: int = 500) -> None:
        super().__init__()
        self.max_characters = max_characters
        self.statuses: list[dict] = []
        self.keys: dict[str, dict] = {}
        self.media: dict[str, int] = {}  # media id -> polls left before it is processed
        self.processing_polls = 2

    def handle(self, req: Recorded):
        path = req.path.rstrip("/")
        if req.method == "GET" and path in ("/api/v1/instance", "/api/v2/instance"):
            return 200, {}, {"uri": "127.0.0.1", "title": "test", "version": "4.3.0", "api_versions": {"mastodon": 2},
                             "configuration": {"statuses": {"max_characters": self.max_characters}}}
        if req.method == "POST" and path == "/api/v1/statuses":
            key = req.headers.get("idempotency-key")
            if key and key in self.keys:  # what Mastodon does: the same key gets the same status
                return 200, {}, self.keys[key]
            form = req.form
            status = {"id": str(110_000 + len(self.statuses)), "content": form.get("status", [""])[0],
                      "in_reply_to_id": form.get("in_reply_to_id", [None])[0],
                      "visibility": form.get("visibility", ["public"])[0], "language": form.get("language", [None])[0],
                      "url": f"{self.url}/@test/{110_000 + len(self.statuses)}", "media_ids": form.get("media_ids[]", []),
                      # the instance's own clock, like the Date header of its reply (a replayed key shows an older one)
                      "created_at": self.now().strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                      "account": {"id": "1", "acct": "test"}}
            self.statuses.append(status)
            if key:
                self.keys[key] = status
            return 200, {}, status
        if req.method == "POST" and path == "/api/v2/media":
            # asynchronous processing, as Mastodon 3.1.4+ does: 202 with no url, then GET /api/v1/media/:id
            # answers 206 (still processing) `processing_polls` times before 200 with the url
            media_id = f"m{710 + len(self.media)}"
            self.media[media_id] = self.processing_polls
            return 202, {}, {"id": media_id, "type": "image", "url": None, "preview_url": None, "description": None}
        if req.method == "GET" and path.startswith("/api/v1/media/") and path.rsplit("/", 1)[1] in self.media:
            media_id = path.rsplit("/", 1)[1]
            left = self.media[media_id]
            self.media[media_id] = max(0, left - 1)
            url = None if left else f"{self.url}/media/{media_id}.png"
            return (206 if left else 200), {}, {"id": media_id, "type": "image", "url": url, "preview_url": url,
                                                  "description": None}
        return super().handle(req)


def fake_jwt(did: str) -> str:
    def b64(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    # the SDK reads `exp` against the real clock to decide when to refresh: keep it well ahead
    return f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64({'sub': did, 'scope': 'com.atproto.appPass', 'exp': int(time.time()) + 7200, 'iat': int(time.time())})}.c2ln"


class BlueskyServer(LocalApp):
    """A PDS: createSession, createRecord (refusing an existing rkey like a real PDS: 500),
    getRecord, uploadBlob, and resolveHandle for the handles in `handles`."""

    did = "did:plc:publishertest"

    def __init__(self, handle: str = "endurance.test", password: str = "app-pass-1234") -> None:
        super().__init__()
        self.account, self.password = handle, password
        self.records: dict[str, dict] = {}  # rkey -> {"uri", "cid", "value"}
        self.handles: dict[str, str] = {"fiawec.bsky.social": "did:plc:fiawec0000000000000000",
                                        "lemans24.bsky.social": "did:plc:lemans240000000000000000"}

    def handle(self, req: Recorded):
        if req.path == "/xrpc/com.atproto.server.createSession":
            body = req.json
            if body.get("identifier") != self.account or body.get("password") != self.password:
                return 401, {}, {"error": "AuthenticationRequired", "message": "Invalid identifier or password"}
            return 200, {}, {"did": self.did, "handle": self.account, "accessJwt": fake_jwt(self.did),
                             "refreshJwt": fake_jwt(self.did), "active": True}
        if req.path == "/xrpc/com.atproto.repo.createRecord":
            body = req.json
            rkey = body.get("rkey") or f"auto{len(self.records)}"
            if rkey in self.records:
                return 500, {}, {"error": "InternalServerError", "message": "Internal Server Error"}
            rec = {"uri": f"at://{self.did}/{body['collection']}/{rkey}", "cid": f"bafyreicid{len(self.records):04d}",
                   "value": body["record"]}
            self.records[rkey] = rec
            return 200, {}, {"uri": rec["uri"], "cid": rec["cid"]}
        if req.path == "/xrpc/com.atproto.identity.resolveHandle":
            did = self.handles.get(req.query.get("handle", [""])[0])
            if did is None:
                return 400, {}, {"error": "InvalidRequest", "message": "Unable to resolve handle"}
            return 200, {}, {"did": did}
        if req.path == "/xrpc/com.atproto.repo.getRecord":
            rec = self.records.get(req.query.get("rkey", [""])[0])
            if rec is None:
                return 400, {}, {"error": "RecordNotFound", "message": "Could not locate record"}
            return 200, {}, rec
        if req.path == "/xrpc/com.atproto.repo.uploadBlob":
            return 200, {}, {"blob": {"$type": "blob", "ref": {"$link": "bafkreithumb"}, "mimeType": "image/png",
                                      "size": len(req.body)}}
        return super().handle(req)


class GraphApp(LocalApp):
    """What Meta's Graph API hosts share: a Bearer token and the error body
    {"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}."""

    version = "v25.0"

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    @staticmethod
    def error(status: int, code: int, message: str, subcode: int | None = None):
        err = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEf"}
        if subcode:
            err["error_subcode"] = subcode
        return status, {}, {"error": err}

    def route(self, req: Recorded) -> list[str] | None:
        """The path's parts after the version, or None when the request is not for this API."""
        parts = req.path.strip("/").split("/")
        if not parts or parts[0] != self.version:
            return None
        return parts[1:]

    def handle(self, req: Recorded):
        parts = self.route(req)
        if parts is None:
            return super().handle(req)
        if req.headers.get("authorization") != f"Bearer {self.token}":
            return self.error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        return self.graph(req, parts, {k: v[0] for k, v in {**req.query, **(req.form if req.method == "POST" else {})}.items()})

    def graph(self, req: Recorded, parts: list[str], args: dict[str, str]):
        return self.error(400, 100, "Unsupported request")


class FacebookServer(GraphApp):
    """Graph API v25.0 for one Page: `POST /{page-id}/feed` (message, link; a repeated message is refused
    with code 506 like Facebook's duplicate check) and `GET /{page-id}/feed`."""

    def __init__(self, page_id: str = "1122334455", token: str = "fb-page-token-6") -> None:
        super().__init__(token)
        self.page_id = page_id
        self.posts: list[dict] = []

    def graph(self, req, parts, args):
        if parts == [self.page_id, "feed"] and req.method == "POST":
            if any(p["message"] == args.get("message") for p in self.posts):
                return self.error(400, 506, "Duplicate status message")
            post = {"id": f"{self.page_id}_{900 + len(self.posts)}", "message": args.get("message"),
                    "link": args.get("link"), "permalink_url": f"https://www.facebook.com/{self.page_id}/posts/{900 + len(self.posts)}"}
            self.posts.append(post)
            return 200, {}, {"id": post["id"]}
        if parts == [self.page_id, "feed"] and req.method == "GET":
            return 200, {}, {"data": [{k: p[k] for k in ("id", "message", "permalink_url")} for p in reversed(self.posts)]}
        return super().graph(req, parts, args)


class ContainerApp(GraphApp):
    """Content publishing with media containers, as Instagram and Threads do it: a container is
    IN_PROGRESS for `processing_polls` status reads, then FINISHED; publishing one that is not finished
    is refused; publishing makes the post. Quotas per 24 hours like the real limits."""

    status_field = "status_code"
    quota_total = 50

    def __init__(self, user: str, token: str) -> None:
        super().__init__(token)
        self.user = user
        self.containers: dict[str, dict] = {}
        self.published: list[dict] = []
        self.processing_polls = 1

    def new_container(self, fields: dict) -> str:
        cid = str(17_900_000 + len(self.containers))
        self.containers[cid] = {**fields, "id": cid, "status": "IN_PROGRESS", "polls": self.processing_polls}
        return cid

    def status(self, cid: str):
        c = self.containers.get(cid)
        if c is None:
            return self.error(400, 100, "Unsupported get request. Object does not exist")
        if c["status"] == "IN_PROGRESS":
            if c["polls"] > 0:
                c["polls"] -= 1
            else:
                c["status"] = "FINISHED"
        return 200, {}, {"id": cid, self.status_field: c["status"]}

    def publish(self, cid: str | None, make) -> Any:
        c = self.containers.get(cid or "")
        if c is None:
            return self.error(400, 100, "Invalid parameter: creation_id")
        if c["status"] != "FINISHED":
            return self.error(400, 9007, "The media is not ready for publishing, please wait for a moment", 2207027)
        c["status"] = "PUBLISHED"
        post = make(c)
        self.published.append(post)
        return 200, {}, {"id": post["id"]}


class InstagramServer(ContainerApp):
    """Instagram Graph API v25.0 content publishing for one IG professional account: image and carousel
    containers (`POST /{ig-user-id}/media`), `GET /{container}?fields=status_code`,
    `POST /{ig-user-id}/media_publish`, `GET /{ig-user-id}/media`, `GET /{ig-user-id}/content_publishing_limit`.
    Captions over 2,200 characters or 30 hashtags are refused, as Instagram does."""

    def __init__(self, user: str = "17841400000000001", token: str = "ig-token-7") -> None:
        super().__init__(user, token)

    def graph(self, req, parts, args):
        if parts == [self.user, "media"] and req.method == "POST":
            caption = args.get("caption", "")
            if len(caption) > 2200 or caption.count("#") > 30:
                return self.error(400, 100, "The caption is too long or has too many hashtags", 2207028)
            if args.get("media_type") == "CAROUSEL":
                children = [c for c in args.get("children", "").split(",") if c]
                if not 2 <= len(children) <= 10 or any(self.containers.get(c, {}).get("status") != "FINISHED" for c in children):
                    return self.error(400, 100, "Invalid parameter: children")
                return 200, {}, {"id": self.new_container({"media_type": "CAROUSEL", "children": children, "caption": caption})}
            if not args.get("image_url"):
                return self.error(400, 100, "Invalid parameter: image_url is required")
            return 200, {}, {"id": self.new_container({"image_url": args["image_url"], "caption": caption,
                                                          "is_carousel_item": args.get("is_carousel_item") == "true"})}
        if parts == [self.user, "media_publish"] and req.method == "POST":
            return self.publish(args.get("creation_id"), lambda c: {
                "id": str(18_000_000 + len(self.published)), "caption": c.get("caption", ""),
                "children": [self.containers[k]["image_url"] for k in c.get("children", [])],
                "image_url": c.get("image_url"), "permalink": f"https://www.instagram.com/p/P{len(self.published)}/"})
        if parts == [self.user, "media"] and req.method == "GET":
            return 200, {}, {"data": [{"id": m["id"], "caption": m["caption"], "permalink": m["permalink"]}
                                      for m in reversed(self.published)]}
        if parts == [self.user, "content_publishing_limit"]:
            return 200, {}, {"data": [{"quota_usage": len(self.published),
                                       "config": {"quota_total": self.quota_total, "quota_duration": 86400}}]}
        if len(parts) == 1 and req.method == "GET":
            return self.status(parts[0])
        return super().graph(req, parts, args)


class ThreadsServer(ContainerApp):
    """Threads API v1.0 for the token's account ("me"): `POST /me/threads` (TEXT or IMAGE, reply_to_id),
    `GET /{container}?fields=status`, `POST /me/threads_publish`, `GET /me/threads`, `GET /me/replies`,
    `GET /me/threads_publishing_limit`. Text over 500 characters is refused."""

    version = "v1.0"
    status_field = "status"
    quota_total = 250

    def __init__(self, token: str = "threads-token-8") -> None:
        super().__init__("me", token)

    def graph(self, req, parts, args):
        if parts == ["me", "threads"] and req.method == "POST":
            text = args.get("text", "")
            if len(text.encode("utf-16-le")) // 2 > 500:
                return self.error(400, 100, "The text exceeds 500 characters")
            parent = args.get("reply_to_id")
            if parent and not any(p["id"] == parent for p in self.published):
                return self.error(400, 100, "Invalid parameter: reply_to_id")
            return 200, {}, {"id": self.new_container({"media_type": args.get("media_type"), "text": text,
                                                          "image_url": args.get("image_url"), "reply_to_id": parent})}
        if parts == ["me", "threads_publish"] and req.method == "POST":
            return self.publish(args.get("creation_id"), lambda c: {
                "id": str(18_100_000 + len(self.published)), "text": c["text"], "reply_to_id": c["reply_to_id"],
                "media_type": c["media_type"], "permalink": f"https://www.threads.net/@test/post/T{len(self.published)}"})
        if parts in (["me", "threads"], ["me", "replies"]) and req.method == "GET":
            replies = parts[1] == "replies"
            return 200, {}, {"data": [{"id": p["id"], "text": p["text"], "permalink": p["permalink"]}
                                      for p in reversed(self.published) if bool(p["reply_to_id"]) == replies]}
        if parts == ["me", "threads_publishing_limit"]:
            posts = sum(1 for p in self.published if not p["reply_to_id"])
            return 200, {}, {"data": [{"quota_usage": posts, "config": {"quota_total": self.quota_total, "quota_duration": 86400},
                                       "reply_quota_usage": len(self.published) - posts,
                                       "reply_config": {"quota_total": 1000, "quota_duration": 86400}}]}
        if len(parts) == 1 and req.method == "GET":
            return self.status(parts[0])
        return super().graph(req, parts, args)


class LinkedInServer(LocalApp):
    """LinkedIn's versioned REST Posts API: `POST /rest/posts` (201, the URN in x-restli-id; a repeated
    commentary is refused with 422 like LinkedIn's duplicate check) and `GET /rest/posts?q=author`.
    Requests without the LinkedIn-Version and X-Restli-Protocol-Version headers are refused."""

    def __init__(self, token: str = "li-token-9") -> None:
        super().__init__()
        self.token = token
        self.posts: list[dict] = []

    def handle(self, req: Recorded):
        if not req.path.startswith("/rest/"):
            return super().handle(req)
        if req.headers.get("authorization") != f"Bearer {self.token}":
            return 401, {}, {"status": 401, "serviceErrorCode": 65600, "code": "INVALID_ACCESS_TOKEN",
                             "message": "Invalid access token"}
        if not req.headers.get("linkedin-version") or req.headers.get("x-restli-protocol-version") != "2.0.0":
            return 426, {}, {"status": 426, "code": "NONEXISTENT_VERSION", "message": "Requested version is not active"}
        if req.path == "/rest/posts" and req.method == "POST":
            body = req.json
            for p in self.posts:
                if p["commentary"] == body.get("commentary"):
                    return 422, {}, {"status": 422, "code": "DUPLICATE_POST",
                                     "message": f"Content is a duplicate of {p['id']}"}
            post = {**body, "id": f"urn:li:share:{7_000_000 + len(self.posts)}"}
            self.posts.append(post)
            return 201, {"x-restli-id": post["id"]}, b""
        if req.path == "/rest/posts" and req.method == "GET":
            author = req.query.get("author", [""])[0]
            return 200, {}, {"elements": [p for p in reversed(self.posts) if p["author"] == author],
                             "paging": {"start": 0, "count": 20}}
        return 404, {}, {"status": 404, "message": "not found"}


class TelegramServer(LocalApp):
    """The Bot API's `sendMessage` and `sendPhoto` for one bot and one channel. HTML parse mode is parsed
    like Telegram does (only the tags it allows, entities decoded; an unknown tag is a 400 "can't parse
    entities"), lengths are checked on the visible text in UTF-16 units (4,096 for a message, 1,024 for a
    caption), and photo URLs listed in `bad_photos` cannot be fetched."""

    def __init__(self, token: str = "123456:tg-bot-token-10", chat: str = "@endurance_hebdo") -> None:
        super().__init__()
        self.token, self.chat = token, chat
        self.messages: list[dict] = []
        self.bad_photos: set[str] = set()

    @staticmethod
    def fail(status: int, description: str, **extra: Any):
        return status, {}, {"ok": False, "error_code": status, "description": description, **extra}

    def handle(self, req: Recorded):
        prefix, _, method = req.path.lstrip("/").partition("/")
        if not prefix.startswith("bot"):
            return super().handle(req)
        if prefix != f"bot{self.token}":
            return self.fail(401, "Unauthorized")
        body = req.json
        if str(body.get("chat_id")) != self.chat:
            return self.fail(400, "Bad Request: chat not found")
        if method == "sendPhoto" and body.get("photo") in self.bad_photos:
            return self.fail(400, "Bad Request: wrong file identifier/HTTP URL specified")
        if method not in ("sendMessage", "sendPhoto"):
            return self.fail(404, "Not Found")
        field_name, limit = ("caption", 1024) if method == "sendPhoto" else ("text", 4096)
        try:
            visible, links = parse_telegram_html(body.get(field_name, ""))
        except ValueError as exc:
            return self.fail(400, f"Bad Request: can't parse entities: {exc}")
        if len(visible.encode("utf-16-le")) // 2 > limit:
            return self.fail(400, f"Bad Request: {'caption' if field_name == 'caption' else 'message'} is too long")
        reply_to = (body.get("reply_parameters") or {}).get("message_id")
        if reply_to is not None and not any(m["message_id"] == reply_to for m in self.messages):
            return self.fail(400, "Bad Request: message to be replied not found")
        message = {"message_id": 50 + len(self.messages), "chat": {"id": -1001234567890, "username": self.chat[1:]},
                   "method": method, "visible": visible, "links": links, "reply_to": reply_to, "raw": body}
        self.messages.append(message)
        return 200, {}, {"ok": True, "result": {"message_id": message["message_id"], "date": 1795000000}}


def parse_telegram_html(text: str) -> tuple[str, list[str]]:
    """The visible text and the link targets of a Bot API HTML message, refusing what Telegram refuses."""
    allowed = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre", "tg-spoiler", "blockquote"}

    class P(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.out: list[str] = []
            self.links: list[str] = []
            self.open: list[str] = []

        def handle_starttag(self, tag, attrs):  # noqa: ANN001
            if tag not in allowed:
                raise ValueError(f"unsupported start tag \"{tag}\"")
            if tag == "a":
                self.links.append(dict(attrs).get("href") or "")
            self.open.append(tag)

        def handle_endtag(self, tag):  # noqa: ANN001
            if not self.open or self.open.pop() != tag:
                raise ValueError(f"unmatched end tag \"{tag}\"")

        def handle_data(self, data):  # noqa: ANN001
            self.out.append(data)

    p = P()
    p.feed(text)
    p.close()
    if p.open:
        raise ValueError("unclosed tag")
    if "<" in "".join(p.out) and "&lt;" not in text:
        raise ValueError("a bare '<'")
    return "".join(p.out), p.links


# -- building editions and running a channel without the CLI -------------------------------------

NETWORKS = ("x", "mastodon", "bluesky", "facebook", "instagram", "threads", "linkedin", "telegram")
NOW = datetime(2026, 11, 23, 8, 5, tzinfo=timezone.utc)
SLOT = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
LINK = "https://www.endurance-info.com/wec/bahrein-2026-toyota-championne"
CREDS = {"PUBLISHER_X_CONSUMER_KEY": "ck-secret-1", "PUBLISHER_X_CONSUMER_SECRET": "cs-secret-2",
         "PUBLISHER_X_ACCESS_TOKEN": "at-secret-3", "PUBLISHER_X_ACCESS_TOKEN_SECRET": "ats-secret-4",
         "PUBLISHER_MASTODON_ACCESS_TOKEN": "masto-secret-5", "PUBLISHER_BLUESKY_APP_PASSWORD": "app-pass-1234",
         "PUBLISHER_BLUESKY_HANDLE": "endurance.test", "PUBLISHER_FACEBOOK_PAGE_TOKEN": "fb-page-token-6",
         "PUBLISHER_INSTAGRAM_ACCESS_TOKEN": "ig-token-7", "PUBLISHER_THREADS_ACCESS_TOKEN": "threads-token-8",
         "PUBLISHER_LINKEDIN_ACCESS_TOKEN": "li-token-9", "PUBLISHER_TELEGRAM_BOT_TOKEN": "123456:tg-bot-token-10"}


def make_posts(network: str, n: int = 3, image: str | None = None, card: dict | None = None) -> tuple[Post, ...]:
    """A thread of n posts in French, each with a link and hashtags, as the composer would give them."""
    out = []
    for i in range(n):
        link = f"{LINK}-{i}"
        text = (f"Été décisif à Bahreïn : Toyota sacrée, Ferrari déçue ({i + 1}/{n}) {link} #WEC #LeMans24" if i == 0
                else f"À lire aussi n°{i + 1} : l'équipe privée célèbre {link} #WEC")
        out.append(Post(network=network, position=i, text=text, length=len(text), limit=500, links=(link,),
                        image=image if i == 0 else None, article_id=f"a{i}", card=card if i == 0 else None))
    return tuple(out)


def make_rendered(posts: dict[str, tuple[Post, ...]], edition_id: str = "2026-W47", campaign: str = "endurance") -> RenderedEdition:
    edition = Edition(campaign=campaign, id=edition_id, window_start=SLOT - timedelta(days=7), window_end=SLOT,
                      slot=SLOT, articles=())
    return RenderedEdition(edition=edition, subject="Endurance Hebdo", preheader="", html="<p>x</p>", text="x", posts=posts)


def post_key(network: str, i: int) -> PostKey:
    """The key of post i of the edition make_rendered builds by default, on that network."""
    return PostKey("endurance/2026-W47", network, f"post:{i}", SLOT)


def make_campaign(mode: str = "thread", spacing: str = "0s", daily_cap: int = 0, **social: Any) -> Campaign:
    return Campaign(name="endurance", title="Endurance Hebdo", series=("wec",), source="campaigns/endurance.toml",
                    channels=("x", "mastodon", "bluesky"),
                    social=SocialSettings(mode=mode, spacing=spacing, daily_cap=daily_cap, **social))


_OPEN: list["Harness"] = []  # closed by the autouse fixture below when each test ends


class Harness:
    """A store, a ledger on a fixed clock, and the channels built by their factories, as `send` does.

    Closed when the test ends (fixture `_close_harnesses`), or at the end of a `with` block."""

    def __init__(self, root: Path, now: datetime = NOW, outbox: bool = False, **tables: dict[str, Any]):
        _OPEN.append(self)
        self.root = root
        self.now = now
        self.store = Store(root / "var" / "publisher.sqlite3")
        self.ledger = Ledger(self.store, clock=lambda: self.now)
        self.stop = threading.Event()
        channels = {name: read_table(registry.get(name).settings_cls, tables.get(name, {}), f"settings.toml: [{name}]")
                    for name in NETWORKS}
        self.settings = Settings(root=root, source="settings.toml", channels=channels)
        self.outbox = root / "var" / "outbox" if outbox else None
        self.resend_unknown = False

    def channel(self, name: str):
        ctx = DispatchContext(settings=self.settings, ledger=self.ledger, now=self.now, progress=Progress(quiet=True),
                              stop=self.stop, outbox=self.outbox, resend_unknown=self.resend_unknown)
        return registry.get(name).make(self.settings, self.settings.channels[name], ctx)

    def send(self, name: str, rendered: RenderedEdition, campaign: Campaign | None = None) -> DispatchReport:
        return self.channel(name).dispatch(rendered, campaign or make_campaign())

    def rows(self, channel: str, edition_key: str = "endurance/2026-W47") -> dict[str, Delivery]:
        return {r.target: r for r in self.ledger.rows(edition_key, channel)}

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "Harness":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# -- fixtures shared by the social test modules (test_x.py, test_mastodon.py, test_bluesky.py, test_social.py) -----------


@pytest.fixture(autouse=True)
def _close_harnesses():
    """Every Harness a test made is closed when it ends, passed or failed."""
    yield
    while _OPEN:
        _OPEN.pop().close()


@pytest.fixture
def creds(monkeypatch):
    """Every PUBLISHER_* credential of the three networks set to the fake values in CREDS."""
    for k, v in CREDS.items():
        monkeypatch.setenv(k, v)


@pytest.fixture
def xs():
    """A running local X API."""
    with XServer() as server:
        yield server


@pytest.fixture
def ms():
    """A running local Mastodon instance."""
    with MastodonServer() as server:
        yield server


@pytest.fixture
def bs():
    """A running local Bluesky PDS."""
    with BlueskyServer() as server:
        yield server


@pytest.fixture
def make_harness(tmp_path):
    """make_harness(**tables) builds a Harness on tmp_path; every one built is closed at teardown."""
    built: list[Harness] = []

    def build(**tables: dict[str, Any]) -> Harness:
        built.append(Harness(tmp_path, **tables))
        return built[-1]

    yield build
    for harness in built:
        harness.close()


@pytest.fixture
def fb():
    """A running local Graph API for one Facebook Page."""
    with FacebookServer() as server:
        yield server


@pytest.fixture
def ig():
    """A running local Instagram Graph API (content publishing)."""
    with InstagramServer() as server:
        yield server


@pytest.fixture
def th():
    """A running local Threads API."""
    with ThreadsServer() as server:
        yield server


@pytest.fixture
def li():
    """A running local LinkedIn Posts API."""
    with LinkedInServer() as server:
        yield server


@pytest.fixture
def tg():
    """A running local Telegram Bot API."""
    with TelegramServer() as server:
        yield server


def live_tables(servers: dict[str, LocalApp]) -> dict[str, dict[str, Any]]:
    """The settings tables that point each network's channel at its local server (short polls and waits)."""
    tables: dict[str, dict[str, Any]] = {
        "x": {"api_url": "", "timeout": 5}, "mastodon": {"instance_url": "", "timeout": 5},
        "bluesky": {"service_url": "", "card_thumbnail": False, "timeout": 5},
        "facebook": {"api_url": "", "page_id": "1122334455", "timeout": 5},
        "instagram": {"api_url": "", "user_id": "17841400000000001", "poll_every": "0.05s", "timeout": 5},
        "threads": {"api_url": "", "poll_every": "0.05s", "timeout": 5},
        "linkedin": {"api_url": "", "organization": "5550001", "timeout": 5},
        "telegram": {"api_url": "", "chat_id": "@endurance_hebdo", "timeout": 5},
    }
    out = {}
    for name, server in servers.items():
        table = dict(tables[name])
        url_key = next(k for k, v in table.items() if v == "")
        table[url_key] = server.url
        out[name] = table
    return out
