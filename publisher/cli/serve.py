"""`publisher serve`: listen for unsubscribe links until Ctrl-C or SIGTERM."""

from __future__ import annotations

import signal
import socket
import threading
from urllib.parse import urlsplit

from publisher.app import Context
from publisher.config.schema import check_port
from publisher.errors import ConfigError
from publisher.web.tokens import signer_from_env
from publisher.web.unsubscribe import make_server


def command_serve(ctx: Context, args) -> int:
    """`publisher serve [--host H] [--port N]` until Ctrl-C or SIGTERM."""
    host = args.host or ctx.settings.web.host
    port = ctx.settings.web.port if args.port is None else args.port
    if args.port is not None:
        check_port(args.port, "serve --port", zero_ok=True)
    signer = signer_from_env(required=True, purpose="the unsubscribe endpoint")
    try:
        server = make_server(ctx.settings, ctx.store, signer, host, port, ctx.clock)
    except socket.gaierror as exc:  # an OSError too, but the fix is the host, not the port
        raise ConfigError(f"serve: cannot listen on {host}:{port}: unknown host or address ({exc.strerror})",
                          hint="pass --host with an address of this machine, like 127.0.0.1 or 0.0.0.0") from None
    except OSError as exc:
        raise ConfigError(f"serve: cannot listen on {host}:{port} ({exc.strerror})",
                          hint="pick another --port, or stop what uses it") from None
    bound_port = server.server_address[1]
    path = urlsplit(ctx.settings.email.unsubscribe_url).path or "/"
    print(f"serving unsubscribe links on http://{host}:{bound_port}{path} (Ctrl-C to stop)", flush=True)

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
