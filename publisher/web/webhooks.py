"""The HTTP layer of the ESP webhooks: `POST /webhooks/<provider>` as Starlette routes.

Authentication and parsing are in publisher/feedback/webhooks.py (no web framework there); this module
reads the body (at most MAX_BODY bytes), hands it over, records the reports and answers. A call that
is rejected (401 not authenticated, 400 malformed, 404 provider not configured, 413 too large) changes
nothing and is logged with the provider, the client and the reason, never with a secret.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from publisher.feedback.webhooks import MAX_BODY, Rejected, WebhookRequest
from publisher.feedback.webhooks import providers as configured_providers
from publisher.store.db import Store
from publisher.store.feedback import record
from publisher.web.context import Web

log = logging.getLogger("publisher")
PATH = "/webhooks/{provider}"
PREFIX = "/webhooks/"
BODY_LIMIT = (PREFIX, MAX_BODY)  # ESPs batch events: more than [web].max_body, checked again below


def area(web: Web) -> list[Route]:
    """The webhook routes of `publisher serve`: providers from the settings, writes in the store's thread."""
    return routes(web.store, configured_providers(web.settings), web.clock, web.settings.bounces.soft_limit, run_store=web.db)


def routes(store: Store, providers: dict[str, Any], clock: Callable[[], datetime], soft_limit: int,
           run_store: Callable[..., Any] | None = None) -> list[Route]:
    """The webhook routes over one store. `run_store(fn, *args)` runs a store write where the store is used
    (the web application's store thread); without it, writes are serialised here."""
    lock = threading.Lock()

    def save(reports, now: datetime) -> list[tuple[str, str]]:
        with lock:
            return record(store, reports, now, soft_limit)

    async def receive(request: Request):
        name = request.path_params["provider"]
        client = request.client.host if request.client else "?"
        provider = providers.get(name)
        if provider is None:
            log.warning("webhooks: call for %r from %s: no such provider configured", name[:40], client)
            return PlainTextResponse("not found\n", status_code=404)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                log.warning("webhooks: %s call from %s rejected: body over %d bytes", name, client, MAX_BODY)
                return PlainTextResponse("too large\n", status_code=413)
        req = WebhookRequest({k.lower(): v for k, v in request.headers.items()}, bytes(body))
        now = clock()
        try:
            # SES may fetch its signing certificate: a blocking call, off the event loop
            reports = await run_in_threadpool(provider.handle, req, now)
        except Rejected as exc:
            log.warning("webhooks: %s call from %s rejected (%d): %s", name, client, exc.status, exc.reason)
            return PlainTextResponse("rejected\n", status_code=exc.status)
        if not reports:
            suppressed = []
        elif run_store is not None:
            suppressed = await run_store(record, store, reports, now, soft_limit)
        else:
            suppressed = await run_in_threadpool(save, reports, now)
        log.info("webhooks: %s: %d report(s), %d address(es) suppressed", name, len(reports), len(suppressed))
        return JSONResponse({"reports": len(reports), "suppressed": len(suppressed)})

    return [Route(PATH, receive, methods=["POST"])]
