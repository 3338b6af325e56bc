"""Serving the application with uvicorn, with a deadline on every request's arrival.

uvicorn closes idle keep-alive connections, but a client that connects and sends nothing, or trickles a
byte every few seconds, would keep its connection for ever. `DeadlineProtocol` gives each request
[web].timeout seconds from the moment its connection opened (or the previous answer ended) to arrive
whole; after that the connection is closed without an answer. The app's own answer is bounded by the
Guard (security.py). Nothing here is per connection but a timer: a flood of slow clients costs sockets,
never threads.
"""

from __future__ import annotations

import asyncio
import logging

import h11
import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.h11_impl import H11Protocol

from publisher.config import Settings

log = logging.getLogger("publisher")


class DeadlineProtocol(H11Protocol):
    deadline = 10.0  # set on the subclass made by `config`

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        self._cancel()
        self._timer = self.loop.call_later(self.deadline, self._too_slow)

    def _cancel(self) -> None:
        timer = getattr(self, "_timer", None)
        if timer is not None:
            timer.cancel()
            self._timer = None

    def _too_slow(self) -> None:
        self._timer = None
        if self.conn.their_state is not h11.DONE and not self.transport.is_closing():
            self.transport.close()  # the request did not arrive in time: no answer, the connection goes

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is h11.DONE:  # the whole request is in: the app's deadline takes over
            self._cancel()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request on this connection gets its own time

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)


def config(app: Starlette, settings: Settings, host: str, port: int) -> uvicorn.Config:
    """uvicorn's settings for `app`: our protocol, bounded connections, no access log of its own (ours has no personal data)."""
    w = settings.web
    protocol = type("BoundDeadlineProtocol", (DeadlineProtocol,), {"deadline": w.timeout})
    return uvicorn.Config(app, host=host, port=port, http=protocol, lifespan="on", access_log=False,
                          log_level="warning", limit_concurrency=w.max_connections, timeout_keep_alive=min(5, int(w.timeout) or 1),
                          proxy_headers=True, forwarded_allow_ips=w.forwarded_allow_ips, server_header=False,
                          date_header=True, backlog=512, timeout_graceful_shutdown=max(int(w.timeout), 1))
