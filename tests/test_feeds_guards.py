"""Feeds that cannot hang or hurt us: a wall-clock deadline, max_bytes after decompression, the redirect rule.

Every test drives the real HTTP client against real servers on loopback; `publisher fetch` runs as a
real subprocess where the promise is about the process (it ends; its peak memory).
"""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
import time
import zlib
from datetime import datetime, timezone

import pytest

from publisher.config import FeedSettings
from publisher.errors import FeedError
from publisher.ingest.feeds import fetch_all
from publisher.ingest.network import Network, address_kind, system_resolve, vetted_addresses
from publisher.progress import Progress
from support.feed_server import FeedServer, gzip_bomb

pytest_plugins = ["support.feed_server"]  # fixtures server, store

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc)
SETTINGS = FeedSettings(timeout=2.0, max_bytes=2_000_000, user_agent="publisher-tests/1")


def rss(title: str, n: int = 1) -> bytes:
    return ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
            f"<item><title>{title}</title><link>https://www.endurance-info.com/a-{n}.html</link>"
            "<pubDate>Mon, 16 Nov 2026 09:00:00 +0000</pubDate><description>Résumé.</description></item>"
            "</channel></rss>").encode()


@pytest.fixture
def intranet():
    """A second server on another loopback address: what a public feed must never reach."""
    with FeedServer("127.0.0.2") as s:
        s.put("/secret", rss("Intranet"))
        yield s


def fetch(sources, store, *, settings=SETTINGS, network=None):
    quiet = Progress(stream=io.StringIO(), interactive=False, quiet=True)
    return fetch_all(list(sources), store, settings, now=NOW, progress=quiet, network=network)


def wait_for(condition, seconds: float = 10.0) -> bool:
    end = time.monotonic() + seconds
    while not condition() and time.monotonic() < end:
        time.sleep(0.05)
    return condition()


def settings_with(project, **feeds) -> None:
    """The project's settings with these [feeds] keys replaced."""
    lines = project.settings.read_text(encoding="utf-8").splitlines()
    start = lines.index("[feeds]") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("[")), len(lines))
    table = [line for line in lines[start:end] if line.split("=")[0].strip() not in feeds]
    table[:0] = [f"{k} = {v}" for k, v in feeds.items()]
    project.write_settings("\n".join(lines[:start] + table + lines[end:]) + "\n")


# Peak RSS of the publisher process itself: wait4/RUSAGE_CHILDREN would report pytest's own peak from
# before exec, so the child writes the kernel's high-water mark of its own image (VmHWM) as it exits.
_HWM = """
import atexit, os, runpy, sys
def hwm():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            open(os.environ['TEST_HWM_FILE'], 'w').write(line.split()[1])
atexit.register(hwm)
sys.argv = ['publisher', *sys.argv[1:]]
runpy.run_module('publisher', run_name='__main__')
"""


def fetch_cli(project, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    """`publisher fetch ARGS` in a real process: (its result, its peak RSS in MB)."""
    hwm = project.root / "hwm.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")} | project.env | {"TEST_HWM_FILE": str(hwm)}
    proc = subprocess.run([sys.executable, "-c", _HWM, "--settings", str(project.settings),
                           "--now", "2026-11-23T09:00:00+01:00", "fetch", *args],
                          cwd=project.root, env=env, capture_output=True, text=True, timeout=120)
    return proc, int(hwm.read_text()) / 1024


def errors(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("publisher: error:")]


# -- the deadline ----------------------------------------------------------------------------------


def test_trickling_servers_are_cut_at_the_deadline_and_others_still_fetch(project, server):
    # A byte every 0.2 s never lets the 1 s read timeout fire: only the 2 s deadline can end these.
    server.put("/trickle-body", trickle="body", every=0.2)
    server.put("/trickle-headers", trickle="headers", every=0.2)
    server.put("/good", rss("WEC : le flux qui répond"))
    settings_with(project, timeout=1.0)
    proc, _ = fetch_cli(project, "--feed", server.url("/trickle-body"), "--feed", server.url("/trickle-headers"),
                        "--feed", server.url("/good"))
    assert proc.returncode == 3, proc.stderr
    assert errors(proc) == [
        f"publisher: error: {server.url(path)}: the download took longer than 2s (twice [feeds].timeout); stopped;"
        " the server is too slow; try again later or raise [feeds].timeout"
        for path in ("/trickle-body", "/trickle-headers")]
    assert proc.stdout.splitlines() == [f"{server.url('/good')}: 1 new, 0 updated, 0 unchanged, 0 rejected"]
    assert "Traceback" not in proc.stderr
    assert wait_for(lambda: server.hung_up == 2)  # we closed both connections; the server did not
    assert server.streamed > 5  # bytes kept coming, so no read timeout could have ended these


def test_a_read_timeout_before_the_deadline_still_says_no_answer(server, store):
    server.put("/hang", hang=True)
    (r,) = fetch([server.url("/hang")], store, settings=FeedSettings(timeout=0.3, max_bytes=10_000))
    assert not r.ok and r.error.startswith("no answer within 0.3s")


# -- max_bytes counts decompressed bytes -----------------------------------------------------------


@pytest.mark.parametrize("encoding, encode", [
    ("gzip", gzip.compress),
    ("deflate", zlib.compress),  # zlib-wrapped, as HTTP says
    ("deflate", lambda data: zlib.compress(data)[2:-4]),  # raw deflate, as some servers send it
])
def test_compressed_feeds_are_decoded(server, store, encoding, encode):
    server.put("/feed", encode(rss("WEC : compressé")), content_encoding=encoding)
    (r,) = fetch([server.url("/feed")], store)
    assert r.ok and r.new == 1, r.line()
    assert server.requests_for("/feed")[0].headers["accept-encoding"] == "gzip, deflate"
    assert store.conn.execute("SELECT title FROM articles").fetchone()["title"] == "WEC : compressé"


def test_unrequested_or_broken_compression_is_one_clear_error(server, store):
    server.put("/br", b"\x0b\x02\x80hello\x03", content_encoding="br")
    server.put("/broken", b"not gzip at all", content_encoding="gzip")
    br, broken = fetch([server.url("/br"), server.url("/broken")], store)
    assert "compressed as 'br', which we did not ask for (gzip or deflate)" in br.error
    assert "the response is not valid gzip data" in broken.error


def test_gzip_bomb_costs_no_more_memory_than_max_bytes(project, server):
    bomb = gzip_bomb(1024)  # 1 GiB of zeros in about 1 MB
    server.put("/bomb", bomb, content_encoding="gzip", content_type="application/rss+xml")
    server.put("/small", gzip.compress(rss("WEC : petit flux")), content_encoding="gzip")
    settings_with(project, max_bytes=2_000_000)
    small, small_peak = fetch_cli(project, "--feed", server.url("/small"))
    assert small.returncode == 0, small.stderr
    proc, bomb_peak = fetch_cli(project, "--feed", server.url("/bomb"))
    assert proc.returncode == 3
    assert errors(proc) == [f"publisher: error: {server.url('/bomb')}: the response is over [feeds].max_bytes"
                            " (2,000,000 bytes); stopped reading; raise [feeds].max_bytes if this feed is really that big"]
    # The same process fetching a tiny feed is the baseline: the bomb may add max_bytes and a little more
    # (before decoding was bounded, one 64 KB network read alone inflated to 64 MB).
    assert bomb_peak - small_peak < 2_000_000 / 2**20 + 8, (small_peak, bomb_peak)


# -- redirects -------------------------------------------------------------------------------------


def acting_public(names: dict[str, list[str]] | None = None, **kw) -> Network:
    """Tests only have loopback: the first hop counts as public, and `names` resolve as given."""
    names = names or {}
    return Network(resolve=lambda host, port: names[host] if host in names else system_resolve(host, port),
                   first_hop_public=True, **kw)


def test_redirects_on_loopback_from_a_loopback_feed_are_followed(server, intranet, store):
    server.put("/old", status=301, location="/moved")
    server.put("/moved", status=302, location=intranet.url("/secret"))
    (r,) = fetch([server.url("/old")], store)
    assert r.ok and r.new == 1, r.line()
    assert [q.path for q in server.requests] == ["/old", "/moved"] and len(intranet.requests) == 1


def test_a_public_feed_redirected_to_a_private_name_is_refused(server, intranet, store):
    server.put("/feed", status=302, location=intranet.url("/secret", host="intranet.example"))
    server.put("/good", rss("WEC : toujours là"))
    bad, good = fetch([server.url("/feed"), server.url("/good")], store,
                      network=acting_public({"intranet.example": ["127.0.0.2"]}))
    assert not bad.ok
    assert bad.line() == (f"{server.url('/feed')}: redirected from a public address to intranet.example (127.0.0.2,"
                          " a loopback address); refused; a public feed may not lead us into a private network; check"
                          " where the feed's URL leads, and configure the final URL if it is really meant")
    assert intranet.requests == []
    assert good.ok and good.new == 1


@pytest.mark.parametrize("target", ["http://127.0.0.2:{port}/secret", "http://[::ffff:127.0.0.2]:{port}/secret",
                                    "http://2130706434:{port}/secret"])  # 127.0.0.2 as one decimal number
def test_a_public_feed_redirected_to_a_loopback_address_is_refused(server, intranet, store, target):
    server.put("/feed", status=307, location=target.format(port=intranet.port))
    (r,) = fetch([server.url("/feed")], store, network=acting_public())
    assert not r.ok and "redirected from a public address to" in r.error and "a loopback address); refused" in r.error
    assert intranet.requests == []


def test_a_name_that_rebinds_to_a_private_address_after_the_check_is_refused_at_connect(server, intranet, store):
    answers = iter([["93.184.216.34"], ["127.0.0.2"]])  # public when checked, loopback when connecting
    server.put("/feed", status=302, location=intranet.url("/secret", host="rebind.example"))

    def resolve(host: str, port: int) -> list[str]:
        return next(answers) if host == "rebind.example" else system_resolve(host, port)

    (r,) = fetch([server.url("/feed")], store, network=Network(resolve=resolve, first_hop_public=True))
    assert not r.ok and "redirected from a public address to rebind.example (127.0.0.2, a loopback address)" in r.error
    assert intranet.requests == []


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/feed.xml", "gopher://127.0.0.1:70/"])
def test_redirects_to_other_schemes_are_refused(server, store, location):
    server.put("/feed", status=301, location=location)
    (r,) = fetch([server.url("/feed")], store)
    scheme = location.split(":")[0]
    assert r.error.startswith(f"redirected to a {scheme}: URL; only http(s) redirects are followed")


def test_a_redirect_loop_stops_after_five_redirects(server, store):
    server.put("/a", status=302, location="/b")
    server.put("/b", status=302, location="/a")
    (r,) = fetch([server.url("/a")], store)
    assert r.error.startswith("too many redirects")
    assert len(server.requests) == 6


@pytest.mark.parametrize("address, kind", [
    ("93.184.216.34", None), ("2606:4700::1111", None), ("::ffff:8.8.8.8", None),
    ("127.0.0.1", "loopback"), ("127.0.0.2", "loopback"), ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"), ("fd00::1", "private"),
    ("::ffff:192.168.0.1", "private"), ("169.254.169.254", "link-local"), ("fe80::1%eth0", "link-local"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"), ("224.0.0.1", "multicast"), ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"), ("100.64.0.1", "non-public"),
])
def test_address_kinds(address, kind):
    assert address_kind(address) == kind


def test_a_redirect_between_public_addresses_is_allowed_and_any_private_answer_refuses():
    network = Network(resolve=lambda host, port: {"cdn.example": ["93.184.216.34", "2606:4700::1111"],
                                                  "mixed.example": ["93.184.216.34", "10.0.0.7"]}[host])
    assert vetted_addresses(network, "cdn.example", 443, public_only=True) == ["93.184.216.34", "2606:4700::1111"]
    assert vetted_addresses(network, "mixed.example", 443, public_only=False) == ["93.184.216.34", "10.0.0.7"]
    with pytest.raises(FeedError, match=r"to mixed.example \(10.0.0.7, a private address\); refused"):
        vetted_addresses(network, "mixed.example", 443, public_only=True)

