"""Reading a source's bytes: a local file, or HTTP under promises a scheduler can rely on.

    with Loader(settings) as loader:
        loaded = loader.load(source, etag=..., last_modified=..., root=...)   # Loaded, or FeedError

Whatever an HTTP server does:
- Deadline: the whole download (DNS aside: connect, TLS, redirects, headers, body) ends within twice
  [feeds].timeout of wall-clock time, kept by every socket operation (network.py), so a server
  trickling a byte a second, even inside its headers, is cut at the deadline.
- Size: [feeds].max_bytes counts the bytes after decompression, inflated here in bounded pieces, so a
  gzip bomb costs no more memory than max_bytes.
- Redirects: at most 5, to http(s) only; a redirect from a public address to a loopback, private,
  link-local or otherwise non-public one is refused (SSRF), here before anything is sent and again by
  the connection on the addresses it really uses. A feed configured on a private address, and its
  redirects, stay allowed: the rule is about where a public feed may send us.
httpx errors become FeedError here.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx

from publisher.config import FeedSettings
from publisher.errors import FeedError
from publisher.ingest.network import Download, Network, came_from_public, client, downloading, vetted_addresses
from publisher.text import one_line

MAX_REDIRECTS = 5
PIECE = 65536  # the most one decompression step may produce, however small its input


@dataclass(frozen=True)
class Loaded:
    """Bytes of a source, or the news that they did not change."""

    data: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None
    not_modified: bool = False


def is_url(source: str) -> bool:
    return re.match(r"^https?://", source, re.I) is not None


# -- decoding --------------------------------------------------------------------------------------


class _Inflate:
    """gzip or deflate undone in pieces of at most PIECE bytes, however much one network chunk expands to."""

    def __init__(self, encoding: str):
        self.encoding = encoding
        self._z = zlib.decompressobj(zlib.MAX_WBITS | 16 if encoding in ("gzip", "x-gzip") else zlib.MAX_WBITS)
        self._started = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        while True:
            try:
                piece = self._z.decompress(data, PIECE)
            except zlib.error:
                if self.encoding == "deflate" and not self._started:  # some servers send raw deflate, no zlib header
                    self._z, self._started = zlib.decompressobj(-zlib.MAX_WBITS), True
                    continue
                raise FeedError(f"the response is not valid {self.encoding} data",
                                hint="the server's compression is broken; try again later") from None
            self._started = True
            if piece:
                yield piece
            data = self._z.unconsumed_tail
            if not data and len(piece) < PIECE:  # a full piece may leave more output inside zlib
                return

    def flush(self) -> bytes:
        return self._z.flush()


class _Identity:
    def feed(self, data: bytes) -> Iterator[bytes]:
        yield data

    def flush(self) -> bytes:
        return b""


def _decoder(content_encoding: str) -> _Inflate | _Identity:
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip().lower() not in ("", "identity")]
    if not codings:
        return _Identity()
    if len(codings) == 1 and codings[0] in ("gzip", "x-gzip", "deflate"):
        return _Inflate(codings[0])
    raise FeedError(f"the response is compressed as '{', '.join(codings)}', which we did not ask for (gzip or deflate)",
                    hint="ask the feed's owner to serve gzip, deflate or plain XML")


# -- loading ---------------------------------------------------------------------------------------


class Loader:
    """Reads sources for one run; opens one HTTP client on the first URL (a run over local files opens none)."""

    def __init__(self, settings: FeedSettings, network: Network | None = None):
        self.settings = settings
        self.network = network or Network()
        self._client: httpx.Client | None = None

    def __enter__(self) -> "Loader":
        return self

    def __exit__(self, *exc) -> None:
        if self._client is not None:
            self._client.close()

    def load(self, source: str, *, etag: str | None = None, last_modified: str | None = None,
             root: Path | None = None) -> Loaded:
        """A source's bytes (conditional when validators are given); FeedError with a next step otherwise."""
        if not is_url(source):
            return _load_file(source, self.settings, etag, root)
        if self._client is None:
            self._client = client(self.settings, self.network)
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        limit = self.settings.timeout * 2  # per-read timeouts alone let a trickling server run forever
        with downloading(time.monotonic() + limit) as download:
            try:
                return self._get(source, headers, download, etag, last_modified)
            except httpx.TimeoutException:
                if time.monotonic() >= download.deadline:
                    raise _late(limit) from None
                raise FeedError(f"no answer within {self.settings.timeout:g}s",
                                hint="try again later or raise [feeds].timeout") from None
            except httpx.InvalidURL as exc:
                raise FeedError(f"invalid URL ({exc})", hint="fix it in [feeds].sources") from None
            except httpx.HTTPError as exc:
                raise FeedError(f"cannot connect ({one_line(str(exc)) or type(exc).__name__})",
                                hint="check the URL and the network, then rerun 'publisher fetch'") from None

    def _get(self, source: str, headers: dict[str, str], download: Download, etag: str | None,
             last_modified: str | None) -> Loaded:
        assert self._client is not None
        request = self._client.build_request("GET", source, headers=headers)
        from_public = self.network.first_hop_public
        for _ in range(MAX_REDIRECTS + 1):
            with contextlib.closing(self._client.send(request, stream=True)) as resp:
                if resp.next_request is None:
                    return self._read(resp, download, etag, last_modified)
                if from_public is None:
                    from_public = came_from_public(resp)
                request = resp.next_request
                drained = 0
                for raw in resp.iter_raw():  # a short redirect body read keeps the connection for the next hop
                    drained += len(raw)
                    if drained > PIECE:
                        break
            # Judged before anything is sent there; the backend judges again on the addresses it connects to.
            url = request.url
            if url.scheme not in ("http", "https"):
                raise FeedError(f"redirected to a {url.scheme or 'relative'}: URL; only http(s) redirects are followed",
                                hint="check where the feed's URL leads, and configure the final URL")
            try:
                vetted_addresses(self.network, url.host, url.port or (443 if url.scheme == "https" else 80), from_public)
            except (OSError, UnicodeError):
                pass  # does not resolve: connecting says so
            download.public_only = from_public
            from_public = None  # the next hop is judged by the address it actually comes from
        raise FeedError("too many redirects", hint="open the URL in a browser and configure where it ends up")

    def _read(self, resp: httpx.Response, download: Download, etag: str | None, last_modified: str | None) -> Loaded:
        settings = self.settings
        if resp.status_code == 304:
            return Loaded(etag=etag, last_modified=last_modified, not_modified=True)
        if resp.status_code >= 400:
            raise FeedError(f"the server answered HTTP {resp.status_code} {resp.reason_phrase}".rstrip(),
                            hint=_status_hint(resp.status_code))
        declared = resp.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > settings.max_bytes:
            raise FeedError(f"the response is {int(declared):,} bytes, over [feeds].max_bytes ({settings.max_bytes:,})",
                            hint="raise [feeds].max_bytes if this feed is really that big")
        decoder = _decoder(resp.headers.get("content-encoding", ""))
        # One growing buffer, handed over without a copy (BytesIO.getvalue shares it): a list of chunks
        # joined at the end held the feed twice, and the freed chunks stayed in the heap for the parse.
        body = io.BytesIO()
        for raw in resp.iter_raw():
            for piece in decoder.feed(raw):
                if body.tell() + len(piece) > settings.max_bytes:  # after decompression: a gzip bomb stops here
                    raise _too_big(settings)
                body.write(piece)
            if time.monotonic() > download.deadline:
                raise _late(settings.timeout * 2)
        tail = decoder.flush()
        if body.tell() + len(tail) > settings.max_bytes:
            raise _too_big(settings)
        body.write(tail)
        kept = {k: resp.headers[k] for k in ("content-type", "content-language") if k in resp.headers}
        kept["content-location"] = str(resp.url)  # the base for relative links after redirects
        return Loaded(data=body.getvalue(), headers=kept, etag=resp.headers.get("etag"),
                      last_modified=resp.headers.get("last-modified"))


def _late(limit: float) -> FeedError:
    return FeedError(f"the download took longer than {limit:g}s (twice [feeds].timeout); stopped",
                     hint="the server is too slow; try again later or raise [feeds].timeout")


def _too_big(settings: FeedSettings) -> FeedError:
    return FeedError(f"the response is over [feeds].max_bytes ({settings.max_bytes:,} bytes); stopped reading",
                     hint="raise [feeds].max_bytes if this feed is really that big")


def _status_hint(status: int) -> str:
    if status in (404, 410):
        return "check the URL in [feeds].sources; the feed may have moved"
    if status in (401, 403):
        return "the server refuses us; check that the feed is public"
    if status == 429 or status >= 500:
        return "the server has trouble; rerun 'publisher fetch' later"
    return "check the URL in [feeds].sources"


# -- local files -----------------------------------------------------------------------------------


def _local_path(source: str, root: Path | None) -> Path:
    path = Path(source[7:] if source.startswith("file://") else source).expanduser()
    return path if path.is_absolute() or root is None else root / path


def _load_file(source: str, settings: FeedSettings, etag: str | None, root: Path | None) -> Loaded:
    """A local file; its validator is the hash of its bytes, so an unchanged sample costs no parse."""
    scheme = re.match(r"^([a-z][a-z0-9+.-]+):", source, re.I)
    if scheme and scheme.group(1).lower() != "file" and len(scheme.group(1)) > 1:  # "C:" is a drive
        raise FeedError(f"unsupported URL scheme '{scheme.group(1)}:'; a source is an http(s) URL or a local path",
                        hint="check the source in [feeds].sources or --feed")
    path = _local_path(source, root)
    try:
        size = path.stat().st_size
        if size > settings.max_bytes:
            raise FeedError(f"file is {size:,} bytes, over [feeds].max_bytes ({settings.max_bytes:,})",
                            hint="raise [feeds].max_bytes or trim the file")
        data = path.read_bytes()
    except FileNotFoundError:
        raise FeedError(f"file not found ({path})", hint="check the path in [feeds].sources or --feed") from None
    except (IsADirectoryError, PermissionError, OSError) as exc:
        raise FeedError(f"cannot read the file ({exc.strerror or exc})", hint="check the path") from None
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    if etag is not None and etag == digest:
        return Loaded(etag=digest, not_modified=True)
    return Loaded(data=data, etag=digest)
