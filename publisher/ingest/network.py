"""The network under feed downloads: where hosts resolve, which addresses a feed may lead to, and
sockets that keep a download's deadline. httpcore is imported here only.

    client(settings, network)       the httpx.Client for feeds, over the transport below
    with downloading(deadline) as d  every socket operation inside ends by `deadline` (time.monotonic());
                                    set d.public_only and connections go to public addresses only
    Network(resolve=...)            the seam tests replace: how hosts resolve
    address_kind(address)           None for a public address, else "loopback", "private", ...

A connection resolves its host itself, vets every address, and connects to those addresses (no DNS
rebinding between the check and the connect). Each read, write, connect and TLS handshake waits at
most the smaller of its own timeout and the time left before the deadline, so a server that trickles
bytes, even inside its headers, cannot hold a download past it.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import certifi
import httpcore
import httpx

from publisher.config import FeedSettings
from publisher.errors import FeedError

ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.1"

# -- addresses -----------------------------------------------------------------------------------


def system_resolve(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives for host:port, in its order, without repeats."""
    return list(dict.fromkeys(str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)))


@dataclass(frozen=True)
class Network:
    """How hosts resolve; connections go to these addresses and redirects are judged on them.

    `first_hop_public` is for tests, which only have loopback: True acts out a feed served from a public
    address. None (production) judges the first hop, like every other, by the address it came from.
    """

    resolve: Callable[[str, int], list[str]] = system_resolve
    first_hop_public: bool | None = None


def address_kind(address: str) -> str | None:
    """None for a public address; else what it is: "loopback", "private", "link-local", ..."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # fe80::1%eth0: the zone does not change the class
    if ip.version == 6 and ip.ipv4_mapped is not None:  # ::ffff:127.0.0.1 is 127.0.0.1
        ip = ip.ipv4_mapped
    for kind, flag in (("loopback", ip.is_loopback), ("link-local", ip.is_link_local), ("unspecified", ip.is_unspecified),
                       ("multicast", ip.is_multicast), ("reserved", ip.is_reserved), ("private", ip.is_private)):
        if flag:
            return kind
    return None if ip.is_global else "non-public"  # 100.64.0.0/10 (carrier-grade NAT) and the like


def vetted_addresses(network: Network, host: str, port: int, public_only: bool) -> list[str]:
    """host's addresses; with public_only, FeedError if any of them is not public."""
    addresses = network.resolve(host, port)
    if public_only:
        for address in addresses:
            kind = address_kind(address)
            if kind is not None:
                raise FeedError(f"redirected from a public address to {host} ({address}, a {kind} address); refused",
                                hint="a public feed may not lead us into a private network; check where the"
                                     " feed's URL leads, and configure the final URL if it is really meant")
    return addresses


# -- one download at a time: its deadline and its redirect rule ------------------------------------


@dataclass
class Download:
    """The download under way in this context."""

    deadline: float  # time.monotonic()
    public_only: bool = False  # set once a hop came from a public address


_current: contextvars.ContextVar[Download | None] = contextvars.ContextVar("publisher_download", default=None)


@contextlib.contextmanager
def downloading(deadline: float) -> Iterator[Download]:
    """Every socket operation in this block (this thread, this context) ends by `deadline`."""
    download = Download(deadline)
    token = _current.set(download)
    try:
        yield download
    finally:
        _current.reset(token)


def _left(timeout: float | None, error: type[Exception]) -> float | None:
    """The socket timeout to use now: at most `timeout`, and never past the current download's deadline."""
    download = _current.get()
    if download is None:
        return timeout
    left = download.deadline - time.monotonic()
    if left <= 0:
        raise error("the download deadline passed")
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    """A socket stream whose every operation ends by the download's deadline."""

    def __init__(self, inner: httpcore.NetworkStream):
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, _left(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str):
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    """Connects to the addresses it resolved and vetted itself, under the deadline."""

    def __init__(self, network: Network):
        self.network = network
        self._sockets = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable | None = None) -> httpcore.NetworkStream:
        download = _current.get()
        try:
            addresses = vetted_addresses(self.network, host, port, download is not None and download.public_only)
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host} ({exc})") from None
        error: Exception = httpcore.ConnectError(f"{host} has no address")
        for address in addresses:
            try:
                return _Stream(self._sockets.connect_tcp(address, port, _left(timeout, httpcore.ConnectTimeout),
                                                         local_address, socket_options))
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable | None = None) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("feeds are never read from unix sockets")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@contextlib.contextmanager
def _as_httpx(request: httpx.Request) -> Iterator[None]:
    """httpcore's errors as the httpx ones load() translates (a timeout stays a timeout)."""
    try:
        yield
    except httpcore.TimeoutException as exc:
        raise httpx.TimeoutException(str(exc) or type(exc).__name__, request=request) from None
    except httpcore.ConnectError as exc:
        raise httpx.ConnectError(str(exc) or type(exc).__name__, request=request) from None
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
        raise httpx.TransportError(str(exc) or type(exc).__name__, request=request) from None


class _Body(httpx.SyncByteStream):
    def __init__(self, inner, request: httpx.Request):
        self._inner, self._request = inner, request

    def __iter__(self) -> Iterator[bytes]:
        with _as_httpx(self._request):
            yield from self._inner

    def close(self) -> None:
        if hasattr(self._inner, "close"):
            self._inner.close()


class _Transport(httpx.BaseTransport):
    """httpx's own transport, less proxies and unix sockets, over the deadline-keeping backend."""

    def __init__(self, network: Network):
        self._pool = httpcore.ConnectionPool(ssl_context=_tls(), network_backend=_Backend(network),
                                             max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host, port=request.url.port,
                           target=request.url.raw_path)
        with _as_httpx(request):
            resp = self._pool.handle_request(httpcore.Request(request.method, url, headers=request.headers.raw,
                                                              content=request.stream, extensions=request.extensions))
        return httpx.Response(resp.status, headers=resp.headers, stream=_Body(resp.stream, request),
                              extensions=resp.extensions)

    def close(self) -> None:
        self._pool.close()


@functools.cache
def _tls() -> ssl.SSLContext:
    # Loading the CA bundle costs ~20-30 ms, more than a whole 304 answer on a LAN; do it once per process.
    return ssl.create_default_context(cafile=certifi.where())


def client(settings: FeedSettings, network: Network | None = None) -> httpx.Client:
    """The HTTP client for feeds: timeouts, our User-Agent, gzip or deflate; no proxy or .netrc from the environment."""
    return httpx.Client(timeout=httpx.Timeout(settings.timeout), follow_redirects=False,
                        transport=_Transport(network or Network()), trust_env=False,
                        headers={"User-Agent": settings.user_agent, "Accept": ACCEPT, "Accept-Encoding": "gzip, deflate"})


def came_from_public(resp: httpx.Response) -> bool:
    """Whether `resp` came over a connection to a public address."""
    stream = resp.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    return not peer or address_kind(peer[0]) is None  # cannot tell: be strict
