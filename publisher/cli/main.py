"""The `publisher` command: argument parsing, logging, and turning errors into one line and an exit code.

Each subcommand's printing lives in its module of this folder, loaded only when that command runs
(start-up time: `publisher status` should not import the sending machinery).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from datetime import datetime, timezone

from publisher import __version__
from publisher.app import Context
from publisher.errors import ConfigError, PublisherError

log = logging.getLogger("publisher")


class _RedactSecrets(logging.Filter):
    """Belt and braces: no PUBLISHER_* secret value ever reaches a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = [v for k, v in os.environ.items() if k.startswith("PUBLISHER_") and _is_secret(k) and len(v) >= 4]
        if secrets:
            msg = record.getMessage()
            for s in secrets:
                msg = msg.replace(s, "***")
            record.msg, record.args = msg, None
        return True


def _is_secret(name: str) -> bool:
    return any(w in name for w in ("PASSWORD", "SECRET", "TOKEN", "KEY"))


def _setup_logging(verbose: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler.addFilter(_RedactSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    log.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


def _now(text: str | None) -> datetime:
    if not text:
        return datetime.now(timezone.utc)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--now: {text!r} is not an ISO 8601 date-time like 2026-11-23T09:00:00+01:00") from None
    if value.tzinfo is None:
        raise ConfigError(f"--now: {text!r} has no UTC offset; write it like 2026-11-23T09:00:00+01:00")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="publisher", description="Weekly newsletters and social posts from a news "
                                "site's feed, sent exactly once.")
    p.add_argument("--version", action="version", version=f"publisher {__version__}")
    p.add_argument("--settings", default=os.environ.get("PUBLISHER_SETTINGS", "settings.toml"),
                   help="settings file (default: settings.toml, or $PUBLISHER_SETTINGS)")
    p.add_argument("--now", help="act as if it were this aware ISO 8601 time (replays, demos); default: the clock")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more detail; -v shows tracebacks")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    f = sub.add_parser("fetch", help="fetch the feeds and store new and edited articles")
    f.add_argument("--feed", action="append", metavar="URL_OR_PATH", help="fetch this source instead of the configured ones (repeatable)")

    pv = sub.add_parser("preview", help="render editions into a review bundle; sends nothing")
    pv.add_argument("--campaign", action="append", metavar="NAME", help="only this campaign (repeatable)")
    pv.add_argument("--edition", metavar="ID", help="this edition (2026-W47, 2026-11-23 or 2026-11, after the schedule) instead of the current one")
    pv.add_argument("--feed", action="append", metavar="URL_OR_PATH", help="read these sources instead of the store (repeatable)")
    pv.add_argument("--out", metavar="DIR", help="bundle folder (default: [publisher].preview_dir)")
    pv.add_argument("--strict", action="store_true", help="exit non-zero when any email has lint problems")

    s = sub.add_parser("send", help="send due editions on every channel of their campaigns, through the ledger")
    s.add_argument("campaigns", nargs="*", metavar="CAMPAIGN", help="campaigns to send (default: all)")
    s.add_argument("--edition", metavar="ID", help="this edition (2026-W47, 2026-11-23 or 2026-11) instead of the one due now")
    s.add_argument("--to", action="append", metavar="ADDRESS", help="send a [TEST] copy to this address only; no ledger rows (repeatable)")
    s.add_argument("--channel", action="append", metavar="NAME", help="only this channel of the campaign (repeatable)")
    s.add_argument("--resend-unknown", action="store_true", help="resend rows whose outcome is unknown (may duplicate them)")
    s.add_argument("--join", action="store_true", help="share the edition with other senders started with --join (other"
                                                        " machines on one PostgreSQL store): each claims its own recipients")

    sb = sub.add_parser("subscribers", help="import, export, count, remove, show and forget subscribers")
    sbs = sb.add_subparsers(dest="subcommand", metavar="ACTION", required=True)
    imp = sbs.add_parser("import", help="import or update subscribers from a CSV file (email,name,series,locale),"
                         " or a Mailchimp, Brevo or listmonk export")
    imp.add_argument("file", metavar="FILE.csv")
    imp.add_argument("--list", dest="list_name", metavar="NAME", help="subscribe every row to this list too")
    exp = sbs.add_parser("export", help="write subscribers as CSV")
    exp.add_argument("--list", dest="list_name", metavar="NAME")
    exp.add_argument("--out", metavar="FILE.csv", help="default: standard output")
    cnt = sbs.add_parser("count", help="subscribers per list, and suppressed addresses")
    cnt.add_argument("--list", dest="list_name", metavar="NAME")
    rm = sbs.add_parser("remove", help="remove subscribers and suppress their addresses")
    rm.add_argument("addresses", nargs="+", metavar="ADDRESS")
    sh = sbs.add_parser("show", help="everything held about a person: lists, consent records, sign-ups, deliveries")
    sh.add_argument("address", metavar="ADDRESS")
    sh.add_argument("--json", action="store_true", help="print it as JSON")
    fg = sbs.add_parser("forget", help="erase a person everywhere (GDPR); only a keyed hash stays on the suppression list")
    fg.add_argument("address", metavar="ADDRESS")

    sv = sub.add_parser("serve", help="run the public pages: sign-up, confirmation, one-click unsubscribe, preferences")
    sv.add_argument("--host", help="default: [web].host")
    sv.add_argument("--port", type=int, help="default: [web].port")

    us = sub.add_parser("users", help="the people who may log in to the admin area of 'publisher serve'")
    uss = us.add_subparsers(dest="users_command", required=True, metavar="SUBCOMMAND")
    ua = uss.add_parser("add", help="add a user or change their role and password ($PUBLISHER_USER_PASSWORD, else asked)")
    ua.add_argument("address", metavar="ADDRESS")
    ua.add_argument("--role", choices=("viewer", "editor"), default="viewer",
                    help="viewer: preview only; editor: also approve, hold, release and send tests")
    uss.add_parser("list", help="the users, their roles, and who is locked out")
    ur = uss.add_parser("remove", help="remove a user and end their sessions")
    ur.add_argument("address", metavar="ADDRESS")

    ar = sub.add_parser("archive", help="write the public archive (sent editions, an index per campaign, Atom feeds)"
                        " as static files")
    ar.add_argument("--out", required=True, metavar="DIR", help="the folder to write (files are replaced atomically)")

    sub.add_parser("bounces", help="read the bounce mailbox (IMAP): suppress bounced, complaining and unsubscribing"
                   " addresses; move what was understood to [bounces].processed_folder")

    db = sub.add_parser("db", help="the store's schema version and its upgrade; copy an SQLite store into PostgreSQL")
    dbs = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    dbs.add_parser("version", help="the store's schema version and the one this publisher needs")
    dbs.add_parser("upgrade", help="apply the store's pending migrations (a PostgreSQL store waits for this command)")
    cp = dbs.add_parser("copy", help="copy every row of an SQLite store into an empty PostgreSQL store, in one transaction")
    cp.add_argument("source", metavar="SQLITE_FILE", help="the SQLite store, e.g. var/publisher.sqlite3")
    cp.add_argument("--to", metavar="URL", help="postgresql://user@host:5432/dbname (password: $PUBLISHER_STORE_PASSWORD);"
                    " default: [publisher].store when it is one")

    st = sub.add_parser("status", help="what was sent, pending, failed, unknown; next runs; last fetches")
    st.add_argument("campaign", nargs="?", metavar="CAMPAIGN")
    st.add_argument("--edition", metavar="ID")

    sub.add_parser("run", help="one-shot: fetch, then send every due edition not yet sent (for cron)")
    sch = sub.add_parser("schedule", help="run unattended: fetch on time, send each edition at its slot")
    sch.add_argument("--once", action="store_true", help="one wake-up, then exit (same as run)")
    return p


# command -> "module:function" in this folder; imported only when that command runs (start-up time)
COMMANDS = {
    "fetch": "fetch_send:command_fetch",
    "send": "fetch_send:command_send",
    "preview": "preview:command_preview",
    "subscribers": "subscribers:command_subscribers",
    "serve": "serve:command_serve",
    "status": "status:command_status",
    "bounces": "bounces:command_bounces",
    "users": "users:command_users",
    "archive": "archive:command_archive",
    "db": "db:command_db",
    "run": "schedule:command_run",
    "schedule": "schedule:command_schedule",
}
INTERRUPTED = 130  # the shell's code for a process ended by SIGINT


def _command(args: argparse.Namespace):
    name = "run" if args.command == "schedule" and args.once else args.command
    module, _, function = COMMANDS[name].partition(":")
    return getattr(importlib.import_module(f"publisher.cli.{module}"), function)


def _dispatch(args: argparse.Namespace) -> int:
    command = _command(args)
    ctx = Context.open(args.settings, now=_now(args.now), fixed_now=bool(args.now), verbose=args.verbose)
    try:
        return command(ctx, args)
    finally:
        ctx.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `publisher` console command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return _dispatch(args)
    except PublisherError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"publisher: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("publisher: interrupted; rerun the same command to continue (sent items are skipped)", file=sys.stderr)
        return INTERRUPTED
