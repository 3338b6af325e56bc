"""What every area of the web application may use: `Web` (settings, campaigns, pages, signer, clock,
and the store's own thread)."""

from __future__ import annotations

import logging

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit

from starlette.responses import HTMLResponse

from publisher.config import Campaign, Settings
from publisher.store.db import Store
from publisher.store.ledger import Ledger
from publisher.web.pages import Pages
from publisher.web.security import RateLimit, origin_of
from publisher.web.tokens import Signer


log = logging.getLogger("publisher")

@dataclass
class Web:
    """What every area's handlers use: settings, campaigns, pages, the signer, the clock, and the store's thread."""

    settings: Settings
    store: Store
    signer: Signer
    clock: Callable[[], datetime]
    pages: Pages
    campaigns: list[Campaign]
    db_thread: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="store"))
    mail_threads: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(2, thread_name_prefix="mail"))
    limits: dict[str, RateLimit] = field(default_factory=dict)
    holder: str | None = None  # the sender id of this worker's notices (publisher serve holds its lease)
    store_lost: Exception | None = None  # the store's connection went away: this worker stops
    stop_serving: Callable[[], None] = lambda: None  # set by `publisher serve`: ends the server loop

    async def db(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a store function in the store's thread."""
        return await asyncio.get_running_loop().run_in_executor(self.db_thread, lambda: fn(*args))

    async def mail(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking mail send in a mail thread."""
        return await asyncio.get_running_loop().run_in_executor(self.mail_threads, lambda: fn(*args))

    def store_gone(self, exc: Exception) -> None:
        """The database session is gone, and this worker's sender lease with it: stop serving, so that the
        supervisor starts a new worker with a new connection (`publisher serve` then exits 7)."""
        if self.store_lost is None:
            self.store_lost = exc
            log.error("%s; this worker stops", exc)
            self.stop_serving()

    def ledger(self) -> Ledger:
        return Ledger(self.store, clock=self.clock, holder=self.holder)

    @property
    def unsubscribe_path(self) -> str:
        return urlsplit(self.settings.email.unsubscribe_url).path.rstrip("/") or "/unsubscribe"

    @property
    def base_path(self) -> str:
        """The folder of the pages: /newsletter for https://example.org/newsletter/unsubscribe."""
        return self.unsubscribe_path.rsplit("/", 1)[0]

    @property
    def public_base(self) -> str:
        """The public URL of that folder, for links in mails."""
        return self.settings.pages_url

    @property
    def origins(self) -> set[str]:
        """Sites whose pages may post the sign-up form: the publisher's own, the unsubscribe host, and [web].allowed_origins."""
        return {origin_of(self.settings.publisher.site_url), origin_of(self.settings.email.unsubscribe_url),
                *(origin_of(o) for o in self.settings.web.allowed_origins)}

    def choices(self, campaigns: Iterable[Campaign] | None = None) -> list[tuple[str, str]]:
        """(list name, label) a reader may pick: the campaigns' lists, then their series (or every series)."""
        out: dict[str, str] = {}
        chosen = list(self.campaigns if campaigns is None else campaigns)
        for c in chosen:
            out[c.list.lower()] = c.title
        series = {s for c in chosen for s in c.series} if campaigns is not None else set(self.settings.series)
        for name, s in self.settings.series.items():
            if name in series:
                out.setdefault(name, s.label)
        return list(out.items())

    def campaign_of_list(self, list_name: str) -> Campaign | None:
        return next((c for c in self.campaigns if c.list.lower() == list_name), None)

    def page(self, name: str, locale: str, status: int = 200, **values) -> HTMLResponse:
        return HTMLResponse(self.pages.render(name, locale, **values), status_code=status)

    def message(self, locale: str, title: str, *paragraphs: str, status: int = 200, **values) -> HTMLResponse:
        """A page of a title and paragraphs, each an English message id translated into `locale` (%-formatted with `values`)."""
        g = self.pages.gettext
        return self.page("message.html", locale, status, title=g(locale, title),
                         paragraphs=[g(locale, p, **values) for p in paragraphs])
