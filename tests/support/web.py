"""`publisher serve` as a real process, and plain HTTP requests to it (shared by the web tests)."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from typing import Iterator
from urllib.parse import urlsplit

import uvicorn

from publisher.web.server import config
from support.email_project import ENV
from support.scheduler_process import wait_for  # noqa: F401 - shared with the web tests

PUBLIC = "https://www.endurance-info.com/newsletter"  # the sample settings' public folder of the pages


def request(url: str, data: bytes | None = None, timeout: float = 30,
            headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """(status, body) of a GET, or of a form POST when `data` is given."""
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if data is not None:
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@contextlib.contextmanager
def serving(project, *global_args: str, env: dict[str, str] | None = None) -> Iterator[tuple[subprocess.Popen, str]]:
    """`publisher [GLOBAL_ARGS] serve --port 0` as a real process: (the process, its unsubscribe URL)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")} | project.env | (ENV if env is None else env)
    proc = subprocess.Popen([sys.executable, "-m", "publisher", "--settings", str(project.settings), *global_args,
                             "serve", "--port", "0"], cwd=project.root, env=full, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "serving unsubscribe links on http://127.0.0.1:" in line, proc.stderr.read() if proc.poll() is not None else line
        yield proc, line.split()[4]  # http://127.0.0.1:PORT/newsletter/unsubscribe
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def local(public_url: str, base: str) -> str:
    """A public https link of a mail, as the reverse proxy would forward it to the local server."""
    parts, here = urlsplit(public_url), urlsplit(base)
    return f"{here.scheme}://{here.netloc}{parts.path}" + (f"?{parts.query}" if parts.query else "")


def csrf(page: bytes) -> str:
    """The CSRF field of a sign-up page."""
    return re.search(rb'name="csrf" value="([^"]+)"', page).group(1).decode()


def link_in(text: str, path: str) -> str:
    """The first https link to `path` in a mail's text."""
    return re.search(rf"https://\S+{re.escape(path)}\?t=\S+", text).group(0)


@contextlib.contextmanager
def app_server(app, settings) -> Iterator[str]:
    """An ASGI app on uvicorn in a thread, on 127.0.0.1 port 0, with serve's own settings; yields its base URL."""
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(config(app, settings, "127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, what="uvicorn to start")
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
