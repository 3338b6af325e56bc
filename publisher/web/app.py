"""The ASGI application of `publisher serve` (Starlette), and what its areas share.

    create_app(settings, store, signer, clock, extra_routes=...)   the application
    Web (context.py)                                                what a route handler may use

Areas are modules of this folder that turn a `Web` into routes: unsubscribe.py (one-click, preferences),
signup.py (the form, double opt-in). Another area (webhooks, admin) is one more list of routes passed in
`extra_routes`, and gets the same guard (body limit, timeouts, bounded concurrency, access log) from
security.py.

SQLite is used from one thread only (a one-thread executor), so requests never share a transaction;
mail goes out from its own small pool, so a slow relay never holds the store.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime
from typing import AsyncIterator, Callable, Sequence

from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute

from publisher.config import Settings, load_campaigns
from publisher.errors import ConfigError, StoreError
from publisher.store.db import Store
from publisher.web import signup, unsubscribe
from publisher.web.context import Web
from publisher.web.pages import N_, Pages
from publisher.web.security import Guard
from publisher.web.tokens import Signer

log = logging.getLogger("publisher")


ExtraRoutes = Sequence[BaseRoute] | Callable[[Web], Sequence[BaseRoute]]


def create_app(settings: Settings, store: Store, signer: Signer, clock: Callable[[], datetime], *,
               extra_routes: Sequence[ExtraRoutes] = (), body_limits: Sequence[tuple[str, int]] = ()) -> Starlette:
    """The application: unsubscribe and preferences, sign-up and confirmation, plus each of `extra_routes`
    (a list of routes, or a function of the `Web` context returning one), all behind the same guard;
    `body_limits` (path prefix, bytes) lets an area take larger bodies than [web].max_body."""
    try:
        campaigns = load_campaigns(settings)
    except ConfigError as exc:  # the pages that need no campaign still work; say why the others are missing
        log.warning("serve: campaigns not loaded (%s); sign-up pages list only the series", exc)
        campaigns = []
    web = Web(settings, store, signer, clock, Pages(settings), campaigns)
    routes: list[BaseRoute] = [*unsubscribe.routes(web), *signup.routes(web)]
    for extra in extra_routes:
        routes.extend(extra(web) if callable(extra) else extra)

    async def not_found(request, exc) -> HTMLResponse:  # noqa: ANN001 - Starlette's handler signature
        return web.message(settings.web.locale, N_("Page not found"), N_("This page does not exist."), status=404)

    async def store_lost(request, exc: StoreError) -> HTMLResponse:
        web.store_gone(exc)
        return web.message(settings.web.locale, N_("Temporarily unavailable"), N_("Please try again in a moment."), status=503)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        web.mail_threads.shutdown(wait=True)  # a confirmation mail on the wire is finished and recorded
        web.db_thread.shutdown(wait=True)

    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found, StoreError: store_lost}, lifespan=lifespan)
    app.state.web = web
    w = settings.web
    app.add_middleware(Guard, max_body=w.max_body, timeout=w.timeout, workers=w.workers, body_limits=body_limits)
    return app
