"""`publisher db version|upgrade|copy`: the store's schema version, applying its migrations, moving to PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from publisher.app import Context
from publisher.config.settings import check_store_url, secret
from publisher.errors import ConfigError, InputError
from publisher.store.backend import is_postgres_url, redact
from publisher.store.copy import copy_store
from publisher.store.db import Store
from publisher.store.migrations import Migration


def command_db(ctx: Context, args) -> int:
    return {"version": _version, "upgrade": _upgrade, "copy": _copy}[args.db_command](ctx, args)


def _configured(ctx: Context) -> Store:
    """The configured store as it is: no migration applied, none refused (that is what these commands decide)."""
    return Store(ctx.settings.store_target, password=secret("PUBLISHER_STORE_PASSWORD"), check_schema=False)


def _version(ctx: Context, args) -> int:
    store = _configured(ctx)
    try:
        have, latest = store.schema_version()
    finally:
        store.close()
    where = ctx.settings.store_name
    if have is None:
        print(f"store {where}: new and empty; this publisher creates it at schema version {latest} on first use")
    elif have < latest:
        print(f"store {where}: schema version {have}, this publisher needs {latest}; run 'publisher db upgrade'")
    elif have > latest:
        print(f"store {where}: schema version {have}, newer than this publisher knows ({latest});"
              " upgrade publisher on this machine")
    else:
        print(f"store {where}: schema version {have}, up to date")
    return 0


def _upgrade(ctx: Context, args) -> int:
    where = ctx.settings.store_name

    def applied(m: Migration) -> None:
        print(f"store {where}: applied version {m.version}: {m.description}", flush=True)

    store = _configured(ctx)
    try:
        done = store.upgrade(applied)
        have, _ = store.schema_version()
    finally:
        store.close()
    if not done:
        print(f"store {where}: up to date at version {have}")
    return 0


def _copy(ctx: Context, args) -> int:
    source = Path(args.source)
    rerun = f"'publisher db copy {args.source}{' --to ' + redact(args.to) if args.to else ''}'"
    if is_postgres_url(args.source) or not source.is_file():
        what = "is a PostgreSQL URL" if is_postgres_url(args.source) else "is a folder" if source.is_dir() else "no such file"
        raise InputError(f"db copy: {redact(args.source)}: {what}; give the SQLite store file to copy",
                         hint="e.g. 'publisher db copy var/publisher.sqlite3 --to postgresql://user@host/dbname'")
    url = args.to or (ctx.settings.publisher.store if ctx.settings.store_is_postgres else None)
    if url is None:
        raise ConfigError(f"db copy: no PostgreSQL store to copy into ([publisher].store in {ctx.settings.source}"
                          " is an SQLite file)", hint=f"give one: {rerun[:-1]} --to postgresql://user@host:5432/dbname'")
    if not is_postgres_url(url):
        raise ConfigError(f"db copy: --to {redact(url)} is not a postgresql:// URL",
                          hint="write it as postgresql://user@host:5432/dbname")
    check_store_url(url, "db copy: --to", "a command line is no place for a secret")
    origin = Store(source)  # an SQLite store upgrades itself on open: both sides at this version's schema
    try:
        target = Store(url, password=secret("PUBLISHER_STORE_PASSWORD"), check_schema=False)
        try:
            copied = copy_store(origin, target, ctx.progress)
        finally:
            target.close()
    finally:
        origin.close()
    print(f"copied {source} into {redact(url)}:")
    width = max(len(c.table) for c in copied)
    for c in copied:
        note = " (counted by the target's triggers; equal to a full count)" if c.table == "delivery_counts" else ""
        print(f"  {c.table:<{width}}  {c.rows:>9}{note}")
    if url == ctx.settings.publisher.store:
        print("next: [publisher].store already names it; with PUBLISHER_STORE_PASSWORD set, start the scheduler again")
    else:
        print(f'next: set store = "{redact(url)}" under [publisher] in {ctx.settings.source} and'
              " PUBLISHER_STORE_PASSWORD in the environment, then start the scheduler again")
    return 0
