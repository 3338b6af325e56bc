"""`publisher serve`: the one-click unsubscribe endpoint (RFC 8058) and a small preferences page.

    GET  <unsubscribe path>?t=TOKEN               a page with one button; never unsubscribes by itself
                                                  (mail scanners and link previewers open every link)
    POST <unsubscribe path>?t=TOKEN               unsubscribes at once (body `List-Unsubscribe=One-Click`
                                                  from a mail client, or the page's button)
    GET/POST <unsubscribe path>/preferences?t=TOKEN   pick the series to keep

The path is the one of [email].unsubscribe_url; a reverse proxy forwards the public https URL to this
server. Every token that does not verify (forged, altered, another subscriber's, garbage, missing)
gets the very same 400 response, so the endpoint says nothing about why.

The server faces the internet, so nobody can make it hold more than it chose to: `[web].workers`
threads each serve one connection at a time (more connections wait in the listen backlog, not in new
threads), each request must arrive whole within `[web].timeout` seconds of the connection (a client that
sends nothing, or trickles a byte at a time, is dropped), and a POST body over MAX_BODY bytes gets 413.
"""

from __future__ import annotations

import html
import io
import logging
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlsplit

from publisher.config import Settings, load_campaigns
from publisher.errors import ConfigError
from publisher.store.db import Store
from publisher.store.subscribers import lists_of, set_lists, suppress, suppression_reason
from publisher.web.tokens import Signer

log = logging.getLogger("publisher")
MAX_BODY = 16_384  # a one-click body is 26 bytes, a preferences form a few hundred
_TOKEN_IN_LOG = re.compile(r"([?&]t=)[^&\s'\"]*")

_PAGE = """<!doctype html>
<html lang="fr"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{title}</title>
<style>body{{font-family:Arial,Helvetica,sans-serif;max-width:32em;margin:3em auto;padding:0 1em;color:#222}}
button{{font-size:1.1em;padding:.6em 1.2em;border:0;border-radius:4px;background:#b00;color:#fff;cursor:pointer}}
label{{display:block;margin:.3em 0}}</style></head>
<body><h1>{title}</h1>{body}</body></html>"""


class App:
    """What the handler needs: settings, the store (one connection, serialised), the signer, a clock."""

    def __init__(self, settings: Settings, store: Store, signer: Signer, clock):
        self.settings, self.store, self.signer, self.clock = settings, store, signer, clock
        self.path = urlsplit(settings.email.unsubscribe_url).path.rstrip("/") or "/"
        self.lock = threading.Lock()
        self.name = settings.publisher.name

    def choosable(self) -> list[tuple[str, str]]:
        """(list name, label) a subscriber may pick on the preferences page: campaign lists, then series."""
        out: dict[str, str] = {}
        try:
            for c in load_campaigns(self.settings):
                out[c.list.lower()] = c.title
        except ConfigError:
            pass
        for name, s in self.settings.series.items():
            out.setdefault(name, s.label)
        return list(out.items())


class _DeadlineReader(io.RawIOBase):
    """A connection's bytes, each read given only the time left until one deadline for the whole request.

    A socket timeout alone is per read: a client sending a byte every few seconds would keep a worker
    for ever."""

    def __init__(self, sock: socket.socket, deadline: float):
        self.sock, self.deadline = sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # noqa: ANN001 - a writable buffer
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive in time")  # http.server drops the connection
        self.sock.settimeout(left)
        return self.sock.recv_into(buffer)


class Handler(BaseHTTPRequestHandler):
    server_version = "publisher"
    sys_version = ""
    app: App  # set on the subclass made by make_server
    timeout: float  # [web].timeout, set on the same subclass

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the plain makefile() reader: ours reads the same socket against the deadline
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, time.monotonic() + self.timeout))

    def log_message(self, fmt, *args) -> None:  # the query holds tokens: never log one
        log.debug("serve: %s", _TOKEN_IN_LOG.sub(r"\1...", fmt % args))

    # -- responses -------------------------------------------------------------------------------

    def _send(self, status: int, title: str, body: str) -> None:
        data = _PAGE.format(title=html.escape(title), body=body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Robots-Tag", "noindex")
        self.send_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")
        self.end_headers()
        self.connection.settimeout(self.timeout)  # reads may have left only a sliver of the request's time
        if self.command != "HEAD":
            self.wfile.write(data)

    def _refused(self) -> None:
        self._send(400, "Lien non valide", "<p>Ce lien n'est pas valide ou a été modifié. Utilisez le lien "
                   "de désinscription présent au bas de l'un de nos e-mails.</p>")

    def _token_address(self) -> tuple[str | None, str]:
        query = parse_qs(urlsplit(self.path).query)
        token = (query.get("t") or [""])[0]
        return (self.app.signer.verify(token) if token else None), token

    def _route(self) -> str | None:
        path = urlsplit(self.path).path.rstrip("/") or "/"
        if path == self.app.path:
            return "unsubscribe"
        if path == self._prefs_path():
            return "preferences"
        return None

    def _prefs_path(self) -> str:
        return f"{self.app.path.rstrip('/')}/preferences"

    def _length(self) -> int:
        try:
            return max(0, int(self.headers.get("Content-Length") or 0))
        except ValueError:
            return 0

    def _body(self) -> dict[str, list[str]]:
        n = self._length()
        raw = self.rfile.read(n) if n else b""
        return parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)

    # -- methods ---------------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        route = self._route()
        if route is None:
            self._send(404, "Page introuvable", "<p>Cette page n'existe pas.</p>")
            return
        address, token = self._token_address()
        if address is None:
            self._refused()
            return
        q = html.escape(token, quote=True)
        if route == "preferences":
            self._preferences_page(address, token)
            return
        with self.app.lock:
            done = suppression_reason(self.app.store, address) == "unsubscribed"
        if done:
            self._send(200, "Désinscription confirmée", f"<p>L'adresse {html.escape(address)} est déjà désinscrite.</p>")
            return
        self._send(200, f"Se désinscrire de {self.app.name}",
                   f"<p>Ne plus recevoir les lettres de {html.escape(self.app.name)} à l'adresse "
                   f"<strong>{html.escape(address)}</strong> ?</p>"
                   f'<form method="post" action="?t={q}"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
                   f'<button type="submit">Me désinscrire</button></form>'
                   f'<p><a href="{self._prefs_path()}?t={q}">Choisir plutôt les séries que je reçois</a></p>')

    def do_POST(self) -> None:
        route = self._route()
        if route is None:
            self._send(404, "Page introuvable", "<p>Cette page n'existe pas.</p>")
            return
        if self._length() > MAX_BODY:  # answered before reading it; the connection is closed after
            self.close_connection = True
            self._send(413, "Requête trop grande", "<p>Ce formulaire est trop long.</p>")
            return
        form = self._body()
        address, token = self._token_address()
        if address is None:
            self._refused()
            return
        if route == "preferences":
            keep = form.get("list", [])
            choosable = [n for n, _ in self.app.choosable()]  # reads the campaign files: not under the store's lock
            with self.app.lock:
                set_lists(self.app.store, address, keep, choosable, self.app.clock())
            log.info("serve: preferences saved for %s (%d lists)", address, len(keep))
            self._preferences_page(address, token, saved=True)
            return
        how = "one-click" if form.get("List-Unsubscribe") == ["One-Click"] else "web page"
        with self.app.lock:
            suppress(self.app.store, address, "unsubscribed", self.app.clock(), detail=how)
        log.info("serve: %s unsubscribed (%s)", address, how)
        self._send(200, "Désinscription confirmée",
                   f"<p>L'adresse {html.escape(address)} ne recevra plus nos lettres. C'est fait, immédiatement.</p>")

    def _preferences_page(self, address: str, token: str, saved: bool = False) -> None:
        with self.app.lock:
            mine = set(lists_of(self.app.store, address))
        boxes = "".join(
            f'<label><input type="checkbox" name="list" value="{html.escape(n, quote=True)}"'
            f'{" checked" if n in mine else ""}> {html.escape(label)}</label>' for n, label in self.app.choosable())
        q = html.escape(token, quote=True)
        self._send(200, "Mes lettres",
                   ("<p>Préférences enregistrées.</p>" if saved else "")
                   + f"<p>Lettres reçues à l'adresse {html.escape(address)} :</p>"
                   + f'<form method="post" action="{self._prefs_path()}?t={q}">{boxes}<p><button type="submit">Enregistrer</button></p></form>')


class PooledHTTPServer(HTTPServer):
    """`workers` threads, each accepting and serving one connection at a time, for as long as it runs.

    Unlike ThreadingHTTPServer (a new thread per connection, without limit), a flood of connections
    costs nothing but places in the kernel's listen backlog; the read deadline frees every worker in
    bounded time, so a legitimate request waits at most about `timeout` per wave of slow clients.
    """

    request_queue_size = 128  # the listen backlog (capped by net.core.somaxconn)
    poll_interval = 0.5  # how often idle workers look for a shutdown (serve_forever's argument)

    def __init__(self, address: tuple[str, int], handler: type[Handler], workers: int):
        self.workers = workers
        self._stopping = threading.Event()
        super().__init__(address, handler)

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Start the workers and wait for shutdown() or Ctrl-C; return when every worker has finished."""
        self.poll_interval = poll_interval
        self.socket.settimeout(poll_interval)  # accepted sockets are blocking again, with the handler's timeout
        threads = [threading.Thread(target=self._work, name=f"serve-{i}", daemon=True) for i in range(self.workers)]
        for t in threads:
            t.start()
        try:
            while not self._stopping.wait(poll_interval):
                pass
        finally:
            self._stopping.set()
            for t in threads:
                t.join()

    def shutdown(self) -> None:
        self._stopping.set()

    def _work(self) -> None:
        while not self._stopping.is_set():
            try:
                request, address = self.socket.accept()
            except TimeoutError:
                continue
            except OSError as exc:  # e.g. out of file descriptors: wait rather than spin
                if not self._stopping.is_set():
                    log.warning("serve: cannot accept a connection (%s)", exc.strerror or exc)
                    self._stopping.wait(self.poll_interval)
                continue
            try:
                self.finish_request(request, address)
            except Exception:
                self.handle_error(request, address)
            finally:
                self.shutdown_request(request)

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001 - socketserver's signature
        """A request that failed (a client that went away, ...) is one log line, not a traceback on stderr."""
        log.warning("serve: a request from %s failed", client_address[0], exc_info=log.isEnabledFor(logging.DEBUG))


def make_server(settings: Settings, store: Store, signer: Signer, host: str, port: int, clock) -> PooledHTTPServer:
    """The HTTP server, bound (port 0 picks a free port); call serve_forever()."""
    app = App(settings, store, signer, clock)
    handler = type("BoundHandler", (Handler,), {"app": app, "timeout": settings.web.timeout})
    return PooledHTTPServer((host, port), handler, settings.web.workers)
