"""Ingestion benchmark: our full ingestion of a 10,000-item feed next to feedparser alone, peak memory, a 304 fetch.

    .venv/bin/python bench/bench_ingest.py [--items 10000] [--rounds 7] [--slices 10] [--fetches 50] [--mb 10]

(a) feedparser.parse on the bytes alone, with its default options (it sanitises and resolves URIs itself)
    and with the options publisher/ingest/feeds.py uses (sanitize_html=False, resolve_relative_uris=False);
(b) our ingestion: feeds.parse (feedparser + normalise + sanitise) + Store.upsert_articles into a fresh
    temporary SQLite file (one per round, on /dev/shm when there is one). Each round reads the whole
    feed, as --slices documents, every measure taking each slice in turn (rotating order), same bytes,
    same process; the table shows median seconds, and ratios as medians of each round's own ratios. The
    goal (overhead under +15%) is that median of ingestion / feedparser with the same options. A cross-check with much less noise times
    the feedparser call inside the ingestion as well: our own work is the rest of the same runs.
(c) peak RSS (the kernel's VmHWM of each child process): `publisher fetch` of a --mb MB feed served by a
    local HTTP server (download, parse, store), next to feedparser.parse alone on the same bytes read from
    a file; each also on a 50-item feed, so that what the large feed itself costs can be compared;
(d) a conditional fetch answered 304 by a local HTTP server, through feeds.fetch_all (store lookup, a new
    client, one HTTP request, state write), next to a bare httpx.get with If-None-Match (a new client each
    time) and a GET on an already open client; median of --fetches.
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import feedparser  # noqa: E402
import httpx  # noqa: E402
from bench_fanout import _run_child  # noqa: E402  (a child process's wall time and VmHWM)

from publisher.config import FeedSettings  # noqa: E402
import publisher.ingest.feeds as feeds_module  # noqa: E402
from publisher.ingest.feeds import fetch_all, parse  # noqa: E402
from publisher.progress import Progress  # noqa: E402
from publisher.store.db import Store  # noqa: E402

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc)
# The store of the timed rounds lives in memory where the system has a tmpfs: SQLite's checkpoints fsync,
# and a shared disk's fsync latency (tens of ms, at random) is the machine's, not our work.
MEMORY_DISK = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
SERIES = ["WEC", "ELMS", "Asian Le Mans Series", "24 Heures du Mans", "IMSA", "GT"]
SUBJECTS = ["Toyota", "Ferrari", "Porsche Penske Motorsport", "Alpine", "Peugeot", "Cadillac", "l’équipe championne",
            "le plateau LMP2", "les pilotes de la filière", "l’écurie française"]
VERBS = ["dévoile", "confirme", "prépare", "annonce", "teste", "présente", "prolonge", "renforce"]
OBJECTS = ["son programme 2027", "ses pilotes", "une nouvelle évolution", "le calendrier de la saison",
           "« un projet ambitieux »", "ses ambitions pour Le Mans", "sa stratégie d’hiver", "un accord de diffusion"]
SENTENCES = [
    "La décision a été prise au terme d’une saison riche en rebondissements, où la régularité a payé.",
    "« Nous avons compris nos faiblesses et nous savons où progresser », explique le directeur technique.",
    "Les premiers essais sont prévus à Aragón dès la mi-décembre, puis au Castellet en janvier.",
    "La Balance de Performance sera publiée avant la Journée Test, une demande ancienne des constructeurs.",
    "Les équipes françaises représentent un tiers du plateau, un record depuis la création de la catégorie.",
    "Le promoteur promet des animations pour le public pendant tout le week-end, de jour comme de nuit.",
]
AUTHORS = ["Laurent Mercier", "Julie Fontaine", "Antoine Berthier", "Sophie Marchal"]


def make_feed(n: int, seed: int = 7) -> bytes:
    """A WordPress-like French RSS 2.0 feed with `n` items, built in memory."""
    rnd = random.Random(seed)
    site = "https://www.endurance-info.com"
    cdn = "https://d24c1jjhvw5da9.cloudfront.net/fr/wp-content/uploads/sites/2/2026/11"
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"'
             ' xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:media="http://search.yahoo.com/mrss/">\n<channel>'
             f'<title>Endurance-Info</title><link>{site}</link><description>Endurance</description><language>fr-FR</language>\n']
    start = NOW - timedelta(days=60)
    for i in range(n):
        series = rnd.sample(SERIES, rnd.choice((1, 1, 2)))
        title = f"{series[0]} : {rnd.choice(SUBJECTS)} {rnd.choice(VERBS)} {rnd.choice(OBJECTS)}"
        title = title.replace("&", "&amp;").replace("<", "&lt;")
        when = start + timedelta(minutes=i * 8)
        link = f"{site}/version-francaise/{series[0].lower().replace(' ', '-')}/article-{300000 + i}.html"
        slug = f"photo-{300000 + i}"
        excerpt = " ".join(rnd.sample(SENTENCES, 2))[:-1]
        more = (f' <a href="{link}" class="more-link">Lire la suite</a>' if i % 2 else " [&hellip;]")
        body = "".join(f"<p>{s}</p>" for s in rnd.sample(SENTENCES, 4))
        img = (f'<p><img width="696" height="464" src="{cdn}/{slug}-696x464.jpg" class="wp-post-image" alt="" '
               f'srcset="{cdn}/{slug}-696x464.jpg 696w, {cdn}/{slug}-218x150.jpg 218w" /></p>') if i % 3 == 0 else ""
        footer = (f'<p>The post <a href="{link}">{title}</a> appeared first on <a href="{site}">Endurance-Info</a>.</p>'
                  if i % 3 == 1 else "")
        media = f'<media:content url="{cdn}/{slug}-1024x683.jpg" medium="image" width="1024" height="683"/>' if i % 3 == 1 else ""
        cats = "".join(f"<category><![CDATA[{c}]]></category>" for c in series)
        parts.append(
            f"<item><title>{title}</title><link>{link}{'?utm_source=rss&amp;utm_medium=rss' if i % 5 == 0 else ''}</link>"
            f"<dc:creator><![CDATA[{rnd.choice(AUTHORS)}]]></dc:creator>"
            f"<pubDate>{when.strftime('%a, %d %b %Y %H:%M:%S +0000')}</pubDate>{cats}"
            f'<guid isPermaLink="false">{site}/?p={300000 + i}</guid>'
            f"<description><![CDATA[<p>{excerpt}{more}</p>]]></description>"
            f"<content:encoded><![CDATA[{img}{body}{footer}]]></content:encoded>{media}</item>\n")
    parts.append("</channel></rss>\n")
    return "".join(parts).encode("utf-8")


def timed(fn) -> float:
    gc.collect()  # every measure starts from the same heap, not from the garbage of the one before
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


class _TimedFeedparser:
    """Stands for the feedparser module inside publisher/feeds.py: parse() adds its time to total[0]."""

    def __init__(self, total: list[float]):
        self.total, self.counting = total, False

    def parse(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return feedparser.parse(*args, **kwargs)
        finally:
            if self.counting:
                self.total[0] += time.perf_counter() - t0


def split_feed(data: bytes, parts: int) -> list[bytes]:
    """The feed as `parts` documents with the same channel, each holding a run of its items."""
    head, _, rest = data.partition(b"<item>")
    items = [b"<item>" + item for item in rest.removesuffix(b"</channel></rss>\n").split(b"<item>")]
    size = -(-len(items) // parts)
    return [head + b"".join(items[i:i + size]) + b"</channel></rss>\n" for i in range(0, len(items), size)]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body = b""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        if self.headers.get("If-None-Match") == '"bench"':
            self.send_response(304)
            self.send_header("ETag", '"bench"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
        self.send_header("ETag", '"bench"')
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)


def serve(body: bytes) -> ThreadingHTTPServer:
    """A local HTTP server answering `body` (ETag "bench") or 304, in a thread."""
    _Handler.body = body
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


def bench_304(fetches: int, body: bytes) -> tuple[float, float, float]:
    server = serve(body)
    url = f"http://127.0.0.1:{server.server_address[1]}/feed"
    settings = FeedSettings(timeout=5)
    quiet = Progress(stream=io.StringIO(), interactive=False, quiet=True)
    ours, bare, reused = [], [], []
    keep = httpx.Client(timeout=5)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.sqlite3")
        (first,) = fetch_all([url], store, settings, now=NOW, progress=quiet)  # stores the ETag
        assert first.ok and first.new > 0, first.line()
        for _ in range(fetches):
            t0 = time.perf_counter()
            (r,) = fetch_all([url], store, settings, now=NOW, progress=quiet)
            ours.append(time.perf_counter() - t0)
            assert r.not_modified, r.line()
            t0 = time.perf_counter()
            resp = httpx.get(url, headers={"If-None-Match": '"bench"'}, timeout=5)
            bare.append(time.perf_counter() - t0)
            assert resp.status_code == 304
            t0 = time.perf_counter()
            resp = keep.get(url, headers={"If-None-Match": '"bench"'})
            reused.append(time.perf_counter() - t0)
            assert resp.status_code == 304
        store.close()
    keep.close()
    server.shutdown()
    server.server_close()
    return statistics.median(ours) * 1000, statistics.median(bare) * 1000, statistics.median(reused) * 1000


# The child of the memory measure that reads a feed with feedparser alone, from a file.
_FEEDPARSER_ALONE = """
import io, sys, feedparser
with open(sys.argv[1], 'rb') as fh:
    d = feedparser.parse(io.BytesIO(fh.read()), sanitize_html=False, resolve_relative_uris=False)
print(len(d.entries), file=sys.stderr)
"""


def bench_memory(megabytes: float, items_per_mb: float) -> tuple[str, list[tuple[str, float, float]]]:
    """Peak RSS (MB) of feedparser alone and of `publisher fetch`, on a 50-item feed and on a large one.

    The small feed shows each process's own floor (interpreter, imports, TLS context, SQLite cache);
    the difference is what the large feed costs, the figure to compare.
    """
    big, small = make_feed(int(megabytes * items_per_mb)), make_feed(50)
    py = sys.executable
    peaks = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "feedparser_alone.py").write_text(_FEEDPARSER_ALONE)
        for data in (small, big):
            (work / "feed.xml").write_bytes(data)
            (work / "settings.toml").write_text(f'[publisher]\nstore = "{work / "store.sqlite3"}"\n'
                                                f"[feeds]\nmax_bytes = {len(data) + 1}\n")
            (work / "store.sqlite3").unlink(missing_ok=True)
            server = serve(data)
            url = f"http://127.0.0.1:{server.server_address[1]}/feed"
            fp = _run_child([py, str(work / "feedparser_alone.py"), str(work / "feed.xml")])[2]
            ours = _run_child([py, "--entry", "publisher.cli:main", "--settings", str(work / "settings.toml"),
                               "--now", NOW.isoformat(), "fetch", "--feed", url])[2]
            server.shutdown()
            server.server_close()
            peaks.append((fp, ours))
    (fp_small, ours_small), (fp_big, ours_big) = peaks
    return f"{len(big) / 1e6:.1f} MB", [("feedparser.parse alone (from a file)", fp_small, fp_big),
                                         ("publisher fetch (HTTP, parse, SQLite)", ours_small, ours_big)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--slices", type=int, default=10, help="documents each round reads the feed as")
    ap.add_argument("--fetches", type=int, default=50)
    ap.add_argument("--mb", type=float, default=10.0, help="size of the feed `publisher fetch` reads for the memory measure")
    args = ap.parse_args()

    data = make_feed(args.items)
    slices = split_feed(data, args.slices)
    print(f"feed: {args.items} items, {len(data) / 1e6:.1f} MB, read as {len(slices)} documents of "
          f"{args.items // len(slices):,} items; {args.rounds} rounds (medians); 304 fetches {args.fetches} (median); "
          f"cpus {os.cpu_count()}, load {os.getloadavg()[0]:.1f}")

    def feedparser_default(doc: bytes, _store) -> None:
        feedparser.parse(io.BytesIO(doc))

    def feedparser_ours(doc: bytes, _store) -> None:
        feedparser.parse(io.BytesIO(doc), sanitize_html=False, resolve_relative_uris=False)

    def parse_only(doc: bytes, _store) -> None:
        r = parse(doc, source="bench", now=NOW)
        assert not r.error and not r.rejected, (r.error, r.rejected[:3])

    def ingest(doc: bytes, store: Store) -> None:
        r = parse(doc, source="bench", now=NOW)
        counts = store.upsert_articles(r.articles, NOW)
        assert counts.new == len(r.articles) and not r.rejected, (r.error, r.rejected[:3])

    # The machines are shared: their speed drifts by a quarter over tens of seconds. So a round reads the
    # whole feed as slices, and every measure reads each slice in turn, in an order that rotates from
    # slice to slice: drift falls on all measures alike. A measure's round time is its sum over the
    # slices; the table shows medians over rounds, and the overhead is the median of per-round ratios.
    runs = {"default": feedparser_default, "same": feedparser_ours, "parse": parse_only, "ingest": ingest}
    t: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    # A cross-check with far less noise: inside the ingestion, the feedparser call publisher/feeds.py
    # makes is timed too, so our own work (the rest) is compared with feedparser's in the very same runs.
    inside: list[float] = []
    feeds_module.feedparser = _TimedFeedparser(inside)
    for r in range(args.rounds):
        total = dict.fromkeys(names, 0.0)
        inside[:] = [0.0]
        with tempfile.TemporaryDirectory(dir=MEMORY_DISK) as tmp:
            t0 = time.perf_counter()
            store = Store(Path(tmp) / "bench.sqlite3")  # one store per round, as one fetch of the whole feed
            total["ingest"] += time.perf_counter() - t0
            for k, doc in enumerate(slices):
                shift = (r + k) % len(names)
                order = names[shift:] + names[:shift]
                for name in (order if k % 2 == 0 else order[::-1]):
                    feeds_module.feedparser.counting = name == "ingest"
                    total[name] += timed(lambda: runs[name](doc, store))
            t0 = time.perf_counter()
            store.close()
            total["ingest"] += time.perf_counter() - t0
        for name in names:
            t[name].append(total[name])
        t.setdefault("inside", []).append(inside[0])
    feeds_module.feedparser = feedparser
    med = {name: statistics.median(v) for name, v in t.items()}
    own = [i / f - 1 for i, f in zip(t["ingest"], t["inside"])]
    rows = [("feedparser.parse alone (default options)", "default"),
            ("feedparser.parse, sanitize/resolve off", "same"),
            ("publisher parse (feedparser + normalise)", "parse"),
            ("publisher ingestion (parse + SQLite upsert)", "ingest")]

    def ratio(name: str, base: str) -> float:  # paired: each round's measures against each other
        return statistics.median(a / b for a, b in zip(t[name], t[base]))

    overhead = ratio("ingest", "same")

    memory = bench_memory(args.mb, args.items / (len(data) / 1e6))
    ms_ours, ms_bare, ms_reused = bench_304(args.fetches, data[:20000].rsplit(b"</item>", 1)[0] + b"</item></channel></rss>")

    print()
    print(f"{'measure (medians of rounds)':46} {'seconds':>9} {'items/s':>10} {'vs default':>11} {'vs same opts':>13}")
    print("-" * 93)
    for label, name in rows:
        secs = med[name]
        print(f"{label:46} {secs:9.3f} {args.items / secs:10,.0f} {ratio(name, 'default'):10.2f}x {ratio(name, 'same'):12.2f}x")
    print("-" * 93)
    # publisher/ingest/feeds.py turns feedparser's own sanitising and URI resolving off (sanitize.py does both,
    # once), so the like-for-like baseline is feedparser with those options off.
    spread = ", ".join(f"{i / s - 1:+.0%}" for i, s in zip(t["ingest"], t["same"]))
    print(f"ingestion overhead vs feedparser with the same options: {(overhead - 1) * 100:+.1f}% (goal: under +15%;"
          f" rounds {spread})")
    print(f"cross-check, in the same runs: our own work over the feedparser call inside the ingestion: "
          f"{statistics.median(own) * 100:+.1f}% (rounds {', '.join(f'{x:+.0%}' for x in own)})")
    print(f"ingestion overhead vs feedparser with its default options: {(ratio('ingest', 'default') - 1) * 100:+.1f}%")
    print()
    size, memory = memory
    print(f"{'peak memory (VmHWM), MB':46} {'50 items':>9} {size:>9} {'the feed costs':>15}")
    print("-" * 82)
    for label, small, big in memory:
        print(f"{label:46} {small:9.1f} {big:9.1f} {big - small:15.1f}")
    (_, fp_small, fp_big), (_, ours_small, ours_big) = memory
    print(f"{'  ratio publisher / feedparser alone':46} {'':9} {ours_big / fp_big:8.2f}x {(ours_big - ours_small) / (fp_big - fp_small):14.2f}x")
    print()
    print(f"{'conditional fetch answered 304':46} {'median ms':>9}")
    print("-" * 57)
    print(f"{'publisher fetch_all (store + HTTP + state)':46} {ms_ours:9.2f}")
    print(f"{'bare httpx.get with If-None-Match':46} {ms_bare:9.2f}")
    print(f"{'  ratio publisher / bare httpx.get':46} {ms_ours / ms_bare:8.2f}x")
    print(f"{'one GET on an open httpx.Client (the floor)':46} {ms_reused:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
