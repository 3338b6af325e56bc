"""`publisher serve`: the public pages (unsubscribe, preferences, sign-up, confirmation, the archive), the mail
system's webhooks and the newsroom's admin area (review, approval, dashboard), until Ctrl-C or SIGTERM."""

from __future__ import annotations

import socket

import uvicorn

from publisher.app import Context
from publisher.channels.email.notice import recover_notices
from publisher.config.schema import check_port
from publisher.errors import ConfigError
from publisher.store.ledger import new_holder
from publisher.web import admin, archive, dashboard, webhooks
from publisher.web.app import create_app
from publisher.web.server import config
from publisher.web.tokens import signer_from_env


def command_serve(ctx: Context, args) -> int:
    """`publisher serve [--host H] [--port N]` until Ctrl-C or SIGTERM."""
    host = args.host or ctx.settings.web.host
    port = ctx.settings.web.port if args.port is None else args.port
    if args.port is not None:
        check_port(args.port, "serve --port", zero_ok=True)
    signer = signer_from_env(required=True, purpose="the unsubscribe and sign-up pages")
    try:
        sock = socket.create_server((host, port), backlog=512, family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except socket.gaierror as exc:  # an OSError too, but the fix is the host, not the port
        raise ConfigError(f"serve: cannot listen on {host}:{port}: unknown host or address ({exc.strerror})",
                          hint="pass --host with an address of this machine, like 127.0.0.1 or 0.0.0.0") from None
    except OSError as exc:
        raise ConfigError(f"serve: cannot listen on {host}:{port} ({exc.strerror})",
                          hint="pick another --port, or stop what uses it") from None
    # this worker sends notices as one sender: another worker starting (here or on another machine sharing
    # a PostgreSQL store) settles only the notices of workers that are gone
    ledger = ctx.ledger().hold(new_holder())
    recover_notices(ctx.settings, ledger)
    app = create_app(ctx.settings, ctx.store, signer, ctx.clock, extra_routes=[webhooks.area, admin.routes, dashboard.routes, archive.routes],
                     body_limits=[webhooks.BODY_LIMIT])
    web = app.state.web
    web.holder = ledger.holder
    shown = f"[{host}]" if ":" in host else host
    local = f"http://{shown}:{sock.getsockname()[1]}"
    print(f"serving unsubscribe links on {local}{web.unsubscribe_path} and sign-up on {local}{web.base_path}/subscribe"
          f" (Ctrl-C to stop)", flush=True)
    print(f"admin area on {local}{web.base_path}/admin/ and the archive on {local}{web.base_path}/archive/", flush=True)
    server = uvicorn.Server(config(app, ctx.settings, host, port))
    web.stop_serving = lambda: setattr(server, "should_exit", True)
    server.run(sockets=[sock])  # SIGTERM and Ctrl-C: uvicorn finishes the requests in flight, then returns
    if web.store_lost is not None:
        raise web.store_lost  # exit 7: a new worker gets a new connection
    return 0
