"""`publisher users add|list|remove`: the people who may log in to the admin area of `publisher serve`.

The password comes from $PUBLISHER_USER_PASSWORD (scripts, tests) or is asked for twice on the terminal;
it is never an argument (shell history, `ps`). Only its argon2id hash is stored.
"""

from __future__ import annotations

import getpass
import os
import sys

from publisher.app import Context
from publisher.errors import ConfigError
from publisher.store.newsroom import add_user, remove_user, users
from publisher.subscribers import normalise_address
from publisher.web.admin import hash_password

MIN_PASSWORD = 12
PASSWORD_ENV = "PUBLISHER_USER_PASSWORD"


def command_users(ctx: Context, args) -> int:
    return {"add": _add, "list": _list, "remove": _remove}[args.users_command](ctx, args)


def _add(ctx: Context, args) -> int:
    try:
        email = normalise_address(args.address)
    except ValueError as exc:
        raise ConfigError(f"users add: {exc}", hint="give the user's email address, e.g. 'publisher users add"
                                                    " redaction@example.org --role editor'") from None
    password = _password()
    new = add_user(ctx.store, email, args.role, hash_password(password), ctx.now)
    print(f"{'added' if new else 'updated'} {email} ({args.role}); log in at {ctx.settings.pages_url}/admin/login")
    return 0


def _password() -> str:
    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        if not sys.stdin.isatty():
            raise ConfigError(f"users add: no password: set ${PASSWORD_ENV} or run it in a terminal to be asked",
                              hint=f"{PASSWORD_ENV}='...' publisher users add ADDRESS --role editor")
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise ConfigError("users add: the two passwords differ", hint="run the same command again")
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"users add: the password must have at least {MIN_PASSWORD} characters",
                          hint="choose a longer one (a phrase of a few words is easy to type)")
    return password


def _list(ctx: Context, args) -> int:
    found = users(ctx.store)
    for u in found:
        locked = f", locked until {u.locked_until:%Y-%m-%d %H:%M} UTC" if u.locked_until and u.locked_until > ctx.now else ""
        print(f"{u.email}  {u.role}{locked}")
    if not found:
        print("no users yet: add one with 'publisher users add ADDRESS --role editor'")
    return 0


def _remove(ctx: Context, args) -> int:
    if not remove_user(ctx.store, args.address.strip()):
        raise ConfigError(f"users remove: no user {args.address!r}", hint="see 'publisher users list'")
    print(f"removed {args.address.strip()}; their sessions ended")
    return 0
