"""Feeds: every source fetched, parsed and stored, and the pure `parse(bytes)`.

    fetch_all(sources, store, settings, now=, progress=)   fetch, parse, store; one SourceResult per source
    read_sources(sources, settings, now=, progress=)       fetch and parse only (preview --feed); no store
    parse(data, source=, now=, headers=)                   bytes -> ParseResult; never raises on bad input

A source is an http(s) URL or a local path, read by fetch.Loader (deadline, size cap, redirect rule),
sending the stored ETag / Last-Modified so an unchanged feed costs one 304. A local file's validator is
the hash of its bytes, so re-reading an unchanged sample costs no parse either.
This is the only module that imports feedparser.
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Iterator

import feedparser

from publisher.config import FeedSettings
from publisher.errors import FeedError
from publisher.ingest.entries import normalise_all
from publisher.ingest.fetch import Loader
from publisher.ingest.network import Network
from publisher.ingest.sanitize import html_to_text
from publisher.text import one_line, safe_url
from publisher.models import Article
from publisher.progress import Progress
from publisher.store.db import Store

log = logging.getLogger("publisher")


@dataclass(frozen=True)
class ParseResult:
    """What one feed document yielded: articles, rejected entries (reasons), warnings, or an error."""

    articles: list[Article] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None  # set when the document yielded no usable entry
    entries: int = 0  # entries feedparser found, before rejection
    title: str = ""  # the feed's own title


@dataclass(frozen=True)
class SourceResult:
    """The outcome of one source in one fetch: counts, reasons, or the error."""

    source: str
    ok: bool
    not_modified: bool = False
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    def line(self) -> str:
        """One human line: `source: 24 new, 0 updated, 0 unchanged, 1 rejected (entry 7: ...)`."""
        if self.error:
            return f"{self.source}: {self.error}"
        if self.not_modified:
            return f"{self.source}: not modified since the last fetch, nothing to do"
        text = f"{self.source}: {self.new} new, {self.updated} updated, {self.unchanged} unchanged, {len(self.rejected)} rejected"
        if self.rejected:
            more = f"; {len(self.rejected) - 2} more" if len(self.rejected) > 2 else ""
            text += f" ({'; '.join(self.rejected[:2])}{more})"
        if self.warnings:
            more = f" (+{len(self.warnings) - 1} more warnings)" if len(self.warnings) > 1 else ""
            text += f"; warning: {self.warnings[0]}{more}"
        return text


# -- parse ---------------------------------------------------------------------------------------


def parse(data: bytes, *, source: str, now: datetime, headers: dict | None = None) -> ParseResult:
    """Parse feed bytes into normalised Articles; bad input gives warnings, rejections or `error`, never raises."""
    headers = {str(k).lower(): str(v) for k, v in (headers or {}).items()}
    try:
        # We sanitise and resolve links ourselves, once; feedparser doing it too would double the cost.
        doc = feedparser.parse(io.BytesIO(data), response_headers=headers, sanitize_html=False,
                               resolve_relative_uris=False)
    except Exception as exc:  # feedparser promises not to raise; if it does, this is still one bad source
        return ParseResult(error=f"cannot be parsed ({one_line(str(exc)) or type(exc).__name__})")
    with _collections_paused():
        result = _result(doc, source=source, now=now, headers=headers)
        del doc  # freed here, by reference counting, before the collector may walk it again
    return result


def _result(doc: Any, *, source: str, now: datetime, headers: dict[str, str]) -> ParseResult:
    """What feedparser's document yields once normalised."""
    warnings: list[str] = []
    if doc.get("bozo"):
        reason = _bozo_reason(doc.get("bozo_exception"))
        if doc.entries:
            warnings.append(f"malformed feed, kept what parsed: {reason}")
        else:
            return ParseResult(error=f"no entries: not a readable RSS/Atom feed ({reason})", warnings=warnings)
    if not doc.entries:
        return ParseResult(error="no entries: the feed is empty or is not an RSS/Atom feed")
    feed = doc.get("feed", {})
    base = safe_url(feed.get("link"), headers.get("content-location")) or safe_url(headers.get("content-location"))
    articles: list[Article] = []
    rejected: list[str] = []
    seen_ids: set[str] = set()
    seen_links: set[str] = set()
    undated = future = 0
    outcomes = normalise_all(doc.entries, source=source, base=base, now=now)
    for i, (entry, outcome) in enumerate(zip(doc.entries, outcomes), start=1):
        if isinstance(outcome, Exception):
            log.debug("%s: entry %d: %s", source, i, outcome, exc_info=outcome)
            rejected.append(f"entry {i}: cannot be read ({one_line(str(outcome)) or type(outcome).__name__})")
            continue
        article, problem = outcome
        if article is None:
            rejected.append(f"entry {i}: {problem}")
            continue
        if article.id in seen_ids or article.link in seen_links:  # keep the first: feeds list newest first
            warnings.append(f"entry {i}: duplicate of an earlier entry ({_short(article.id)}), kept the first")
            continue
        seen_ids.add(article.id)
        seen_links.add(article.link)
        if problem == "undated":
            undated += 1
        elif problem == "future":
            future += 1
            warnings.append(f"entry {i}: date in the future ({_entry_date(entry)}), used the fetch time")
        articles.append(article)
    if undated:
        warnings.append(f"{undated} entr{'y has' if undated == 1 else 'ies have'} no readable date, used the fetch time")
    title = one_line(html_to_text(feed.get("title", "")))
    if not articles:
        return ParseResult(rejected=rejected, warnings=warnings, entries=len(doc.entries), title=title,
                           error=f"no usable entries ({len(rejected)} rejected: {'; '.join(rejected[:2])})")
    for w in warnings[-1:]:
        log.debug("%s: %s", source, w)
    return ParseResult(articles=articles, rejected=rejected, warnings=warnings, entries=len(doc.entries), title=title)


@contextlib.contextmanager
def _collections_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block (the collector's own state is restored after).

    Normalising allocates a few objects an entry, none in a cycle, yet enough to set off full
    collections, each walking feedparser's whole document, still alive (80 ms for 10,000 entries),
    for nothing to collect. Once the document is freed, collections walk what is left.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _bozo_reason(exc: Any) -> str:
    if exc is None:
        return "unknown problem"
    text = one_line(getattr(exc, "getMessage", lambda: str(exc))() if hasattr(exc, "getMessage") else str(exc))
    line = getattr(exc, "getLineNumber", None)
    if callable(line):
        text = f"line {line()}: {text}"
    return text[:200] or type(exc).__name__


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _entry_date(entry: Any) -> str:
    return one_line(dict.get(entry, "published") or dict.get(entry, "updated") or "?")


# -- fetch ---------------------------------------------------------------------------------------


def _fail(source: str, exc: Exception) -> SourceResult:
    message = str(exc) if isinstance(exc, FeedError) else f"unexpected error ({one_line(str(exc)) or type(exc).__name__}); rerun with -v for details"
    if isinstance(exc, FeedError) and not exc.hint:
        message += "; check this source, then rerun 'publisher fetch'"
    return SourceResult(source=source, ok=False, error=message)


def fetch_all(sources: list[str], store: Store, settings: FeedSettings, *, now: datetime, progress: Progress,
              root: Path | None = None, network: Network | None = None) -> list[SourceResult]:
    """Fetch, parse and store every source; relative paths resolve against `root` (default: the working folder)."""
    results: list[SourceResult] = []
    with Loader(settings, network) as loader:
        for source in sources:
            with progress.task(f"fetch {source}") as task:
                result = _fetch_one(source, store, loader, now=now, root=root)
                if result.new + result.updated + result.unchanged:
                    task.advance(result.new + result.updated + result.unchanged)
            log.debug("%s", result.line())
            results.append(result)
    return results


def _fetch_one(source: str, store: Store, loader: Loader, *, now: datetime, root: Path | None) -> SourceResult:
    state = store.feed_state(source)
    etag = state.etag if state is not None and state.ok else None
    modified = state.last_modified if state is not None and state.ok else None
    try:
        loaded = loader.load(source, etag=etag, last_modified=modified, root=root)
        if loaded.not_modified:
            result = SourceResult(source=source, ok=True, not_modified=True)
            store.save_feed_state(source, now=now, result=result.line(), ok=True, keep_validators=True)
            return result
        parsed = parse(loaded.data, source=source, now=now, headers=loaded.headers)
        if parsed.error:
            result = SourceResult(source=source, ok=False, rejected=parsed.rejected, warnings=parsed.warnings,
                                  error=f"{parsed.error}; check that this is an RSS/Atom feed, then rerun 'publisher fetch'")
            store.save_feed_state(source, now=now, result=result.line(), ok=False, keep_validators=True)
            return result
        counts = store.upsert_articles(parsed.articles, now)
        result = SourceResult(source=source, ok=True, new=counts.new, updated=counts.updated,
                              unchanged=counts.unchanged, rejected=parsed.rejected, warnings=parsed.warnings)
        store.save_feed_state(source, now=now, result=result.line(), ok=True, etag=loaded.etag,
                              last_modified=loaded.last_modified)
        return result
    except FeedError as exc:
        result = _fail(source, exc)
    except Exception as exc:  # one bad source never stops the others
        log.debug("%s: unexpected error", source, exc_info=True)
        result = _fail(source, exc)
    try:
        store.save_feed_state(source, now=now, result=result.line(), ok=False, keep_validators=True)
    except Exception:  # the store itself failing is reported by the next stage that needs it
        log.debug("%s: cannot record the failure", source, exc_info=True)
    return result


def read_sources(sources: Iterable[str], settings: FeedSettings, *, now: datetime, progress: Progress,
                 root: Path | None = None, network: Network | None = None) -> tuple[list[Article], list[SourceResult]]:
    """Fetch and parse sources without touching any store (no conditional GET): for `preview --feed`."""
    articles: dict[str, Article] = {}
    results: list[SourceResult] = []
    with Loader(settings, network) as loader:
        for source in sources:
            with progress.task(f"read {source}") as task:
                try:
                    loaded = loader.load(source, root=root)
                    parsed = parse(loaded.data, source=source, now=now, headers=loaded.headers)
                except FeedError as exc:
                    results.append(_fail(source, exc))
                    continue
                except Exception as exc:
                    log.debug("%s: unexpected error", source, exc_info=True)
                    results.append(_fail(source, exc))
                    continue
                if parsed.error:
                    results.append(SourceResult(source=source, ok=False, rejected=parsed.rejected, warnings=parsed.warnings,
                                                error=f"{parsed.error}; check that this is an RSS/Atom feed"))
                    continue
                new = 0
                for a in parsed.articles:
                    if a.id not in articles:
                        articles[a.id] = a
                        new += 1
                if new:
                    task.advance(new)
                results.append(SourceResult(source=source, ok=True, new=new, unchanged=len(parsed.articles) - new,
                                            rejected=parsed.rejected, warnings=parsed.warnings))
    return list(articles.values()), results
