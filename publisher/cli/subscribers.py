"""`publisher subscribers import|export|count|remove|show|forget`: the subscriber functions, and what they print."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable

from publisher.app import Context
from publisher.config import load_campaigns, secret
from publisher.errors import ConfigError, InputError
from publisher.store.audience import hashed_suppressions
from publisher.store.subscribers import counts, iter_subscribers, remove
from publisher.privacy import erase, show
from publisher.subscribers import import_csv, normalise_address, write_csv
from publisher.web.tokens import SECRET_ENV, signer_from_env


def _known_lists(ctx: Context) -> set[str]:
    known = set(ctx.settings.series)
    try:
        for c in load_campaigns(ctx.settings):
            known.add(c.list.lower())
    except ConfigError:
        pass  # a broken campaign file is reported by the commands that need campaigns
    return known


def _forgotten(store) -> Callable[[str], bool] | None:
    """Whether an address was forgotten (its keyed hash is suppressed); None when nobody was."""
    hashes = hashed_suppressions(store)
    if not hashes:
        return None
    signer = signer_from_env(required=True, purpose=f"an import ({len(hashes)} forgotten address(es) must be kept out)")
    return lambda email: signer.hashed(email) in hashes


def command_subscribers(ctx: Context, args) -> int:
    """`publisher subscribers import|export|count|remove|show|forget`."""
    return _SUBCOMMANDS[args.subcommand](ctx, ctx.store, args)


def _import(ctx: Context, store, args) -> int:
    """`subscribers import FILE`: stream the file in, list the bad rows, exit 2 if there were any."""
    path = Path(args.file)
    known = _known_lists(ctx)
    if args.list_name:
        known.add(args.list_name.lower())
    report = import_csv(store, path, ctx.now, extra_list=args.list_name, known_lists=known, progress=ctx.progress,
                        forgotten=_forgotten(store))
    for line, reason in report.rejected:  # after the progress bar, not through it
        print(f"{path}: line {line}: {reason}", file=sys.stderr)
    if report.rejected_count > len(report.rejected):
        print(f"{path}: {report.rejected_count - len(report.rejected)} more rejected row(s) not listed"
              f" (only the first {len(report.rejected)} are)", file=sys.stderr)
    print(report.line(str(path)))
    if not (report.new or report.updated or report.unchanged or report.suppressed or report.rejected_count
            or report.to_suppression or report.forgotten):
        print(f"{path}: no subscriber rows after the header; nothing was imported", file=sys.stderr)
    if report.rejected_count:
        print(f"{report.rejected_count} row(s) rejected and not imported; fix them and rerun "
              f"'publisher subscribers import {path}' (rows already imported are updated, not duplicated)", file=sys.stderr)
        return InputError.exit_code
    return 0


def _export(ctx: Context, store, args) -> int:
    """`subscribers export [--out FILE]`: CSV to the file or standard output."""
    rows = iter_subscribers(store, args.list_name)
    if args.out:
        try:
            with open(args.out, "w", encoding="utf-8", newline="") as fh:
                n = write_csv(rows, fh)
        except OSError as exc:
            raise InputError(f"subscribers export: cannot write {args.out} ({exc.strerror})",
                             hint="pass --out with a file path in a folder you can write, or drop --out"
                                  " to write to standard output") from None
        print(f"{n} subscribers written to {args.out}", file=sys.stderr)
    else:
        write_csv(rows, sys.stdout)
    return 0


def _count(ctx: Context, store, args) -> int:
    """`subscribers count`: subscribers per list and suppressed addresses."""
    found = counts(store, args.list_name)
    for lst, n in found.per_list:
        print(f"{lst}: {n}")
    sup = sum(n for _, n in found.suppressed)
    detail = ", ".join(f"{n} {r}" for r, n in found.suppressed)
    print(f"total: {found.total} subscribers; {sup} suppressed" + (f" ({detail})" if detail else ""))
    return 0


def _remove(ctx: Context, store, args) -> int:
    """`subscribers remove ADDRESS ...`: remove and suppress; exit 2 for a malformed address."""
    bad = 0
    for text in args.addresses:
        try:
            email = normalise_address(text)
        except ValueError as exc:
            print(f"{text}: {exc}", file=sys.stderr)
            bad += 1
            continue
        deleted = remove(store, email, ctx.now)
        print(f"{email}: {'removed and suppressed' if deleted else 'not a subscriber; suppressed'}")
    return InputError.exit_code if bad else 0


def _person(ctx: Context, store, args) -> int:
    """`subscribers show|forget ADDRESS`: everything held about a person, or erasing it."""
    try:
        email = normalise_address(args.address)
    except ValueError as exc:
        raise InputError(f"subscribers {args.subcommand}: {exc}", hint=f"pass one address, e.g."
                         f" 'publisher subscribers {args.subcommand} jean.dupont@example.org'") from None
    if args.subcommand == "show":  # without the secret, only the forgotten-address check is left out
        _print_person(show(store, email, signer_from_env(required=False) if secret(SECRET_ENV) else None), args.json)
        return 0
    signer = signer_from_env(required=True, purpose="'subscribers forget' (it keeps a keyed hash of the address)")
    done = erase(ctx.settings, store, email, signer, ctx.clock())
    s = done.store
    print(f"{email}: forgotten: subscriber row {'deleted' if s.subscriber else 'not found'}, {s.consents} consent record(s),"
          f" {s.signups} sign-up(s), {s.deliveries} ledger row(s) now under a keyed hash, {done.journal_lines} journal"
          f" line(s), {len(done.files)} outbox file(s)"
          + (f"; kept on the suppression list as a keyed hash ({s.suppressed})" if s.suppressed else ""))
    return 0


_SUBCOMMANDS = {"import": _import, "export": _export, "count": _count, "remove": _remove, "show": _person, "forget": _person}


def _print_person(data: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return
    sub = data["subscriber"]
    print(f"{data['email']}: " + (f"subscriber since {sub['created_at']}, name {sub['name']!r}, locale {sub['locale'] or '-'}"
                                  if sub else "not a subscriber"))
    print(f"lists: {', '.join(data['lists']) or '-'}")
    for x in data["subscriptions"]:
        print(f"subscription: {x['list']} from {x['source'] or 'an earlier version'}" + (f" since {x['since']}" if x["since"] else ""))
    for r in data["suppression"]:
        print(f"suppressed: {r['reason']} since {r['created_at']}" + (f" ({r['detail']})" if r["detail"] else ""))
    if data["suppressed_as_forgotten"]:
        print(f"suppressed as a forgotten address: {data['suppressed_as_forgotten']}")
    for c in data["consents"]:
        proof = ", ".join(f"{k} {c[k]}" for k in ("given_at", "ip", "consent", "confirmed_at", "confirm_ip") if c[k])
        print(f"consent: {c['kind']} {c['lists']} from {c['source']}" + (f": {proof}" if proof else "") + f" (recorded {c['recorded_at']})")
    for g in data["signups"]:
        print(f"sign-up: {g['lists']} from form {g['form']} at {g['created_at']}, "
              + (f"confirmed {g['confirmed_at']}" if g["confirmed_at"] else f"not confirmed (expires {g['expires_at']})"))
    for d in data["deliveries"]:
        print(f"delivery: {d['edition_key']} {d['channel']} {d['state']} at {d['updated_at']}" + (f": {d['reply']}" if d["reply"] else ""))
