"""Subscriber files: addresses and locales normalised, CSV rows read and written, an import streamed to the store.

The subscribers themselves, their lists and the suppression list live in store/subscribers.py.
"""

from __future__ import annotations

import csv
import functools
import itertools
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable, Iterator, TextIO

from publisher.text import one_line
from publisher.progress import Progress
from publisher.store.db import Store
from publisher.store.subscribers import Consent, ImportReport, SubscriberRow, split_lists, upsert
from publisher.subscriber_file import Format, detect, records, sniff

SUPPRESSION_REASONS = ("unsubscribed", "hard-bounce", "complaint", "manual")

# dot-atom local part (RFC 5322 atext), ASCII only: every relay accepts these without SMTPUTF8
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL = re.compile(rf"^{_ATEXT}(?:\.{_ATEXT})*$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_SPACE = re.compile(r"\s")  # the same characters as str.isspace


def normalise_address(text: str) -> str:
    """`' Jean.Dupont@Example.ORG '` -> `'jean.dupont@example.org'`; ValueError names what is wrong.

    The whole address is lower-cased: mailbox providers treat the local part case-insensitively, and
    one reader must never be two subscribers.
    """
    addr = text.strip().strip("<>").strip()
    if not addr:
        raise ValueError("empty address")
    if _SPACE.search(addr):
        raise ValueError(f"{addr!r} contains spaces")
    if addr.count("@") != 1:
        raise ValueError(f"{addr!r} is not an address (needs exactly one @)")
    local, domain = addr.split("@")
    if not local:
        raise ValueError(f"{addr!r} has nothing before the @")
    if not _LOCAL.match(local):
        raise ValueError(f"{addr!r}: the part before the @ has characters or dots that are not allowed")
    if not domain:
        raise ValueError(f"{addr!r} has nothing after the @")
    domain = _ascii_domain(domain)
    if domain is None:
        raise ValueError(f"{addr!r}: the domain is not valid")
    result = f"{local.lower()}@{domain}"
    if len(result) > 254 or len(local) > 64:
        raise ValueError(f"{addr!r} is too long")
    return result


@functools.lru_cache(maxsize=4096)  # an import of a million rows has a few hundred domains
def _ascii_domain(domain: str) -> str | None:
    """`Exämple.FR.` -> `xn--exmple-cua.fr`; None if it is not a valid domain."""
    try:
        domain = domain.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.match(lab) for lab in labels) or labels[-1].isdigit():
        return None
    return domain


@functools.lru_cache(maxsize=256)  # a handful of locales, parsed once each
def _normalise_locale(text: str) -> str:
    text = (text or "").strip().replace("-", "_")
    if not text:
        return ""
    try:
        from babel import Locale

        return str(Locale.parse(text))
    except Exception:
        raise ValueError(f"unknown locale {text!r} (e.g. fr_FR)") from None


# -- CSV -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Suppressed:
    """A row of an export of unsubscribed, cleaned or blocklisted addresses: for the suppression list."""

    email: str
    reason: str
    detail: str


def read_csv(path: Path, *, extra_list: str | None, known_lists: set[str] | None,
             encoding: str | None = None) -> Iterator[tuple[int, SubscriberRow | Suppressed | str]]:
    """(line, row) for each good row and (line, reason) for each bad one; a file that cannot be read at all raises.

    The file is streamed, one row in memory at a time; `encoding` is `sniff`'s if the caller has it.
    """
    encoding = encoding or sniff(path)[0]
    fmt = detect(path, encoding)
    plain = Consent(source=f"{fmt.source} {path.name}")  # our own format has no consent columns: one for all rows
    for line, rec in records(path, encoding):
        try:
            yield line, _row(rec, fmt, plain, extra_list, known_lists)
        except ValueError as exc:
            yield line, str(exc)


def _row(rec: dict[str, str], fmt: Format, plain: Consent, extra_list: str | None,
         known_lists: set[str] | None) -> SubscriberRow | Suppressed:
    """One record as a subscriber (or a suppression); ValueError says what is wrong with it."""
    email = normalise_address(rec.get("email", ""))
    reason = fmt.suppress or fmt.blocked.get(rec.get("blocked", "").strip().lower())
    if reason:
        when = rec.get("left_at", "").strip()
        return Suppressed(email, reason, one_line(plain.source + (f", {when}" if when else "")
                                                  + (f": {rec['left_why']}" if rec.get("left_why") else ""))[:200])
    lists = split_lists(rec.get("lists", ""))
    if extra_list:
        lists.append(extra_list.lower())
    if known_lists is not None:
        unknown = [lst for lst in lists if lst not in known_lists]
        if unknown:
            raise ValueError(f"unknown series or list {unknown[0]!r} (known: {', '.join(sorted(known_lists))})")
    if not lists:
        raise ValueError("no series or list (fill the series column, or use --list NAME)")
    if fmt.name == "csv":
        name, consent = rec.get("name", ""), plain
    else:
        name = rec.get("name") or " ".join(p for p in (rec.get("first_name", "").strip(), rec.get("last_name", "").strip()) if p)
        flags = "; ".join(f"{k.upper().replace('_', '-')}={rec[k].strip()}" for k in ("double_opt_in", "opt_in") if rec.get(k, "").strip())
        consent = Consent(source=plain.source, given_at=_text(rec.get("optin_time")), ip=_text(rec.get("optin_ip")),
                          consent=flags or None, confirmed_at=_text(rec.get("confirm_time")), confirm_ip=_text(rec.get("confirm_ip")))
    return SubscriberRow(email=email, name=one_line(name)[:200], lists=tuple(dict.fromkeys(lists)),
                         locale=_normalise_locale(rec.get("locale", "")), consent=consent)


def _text(value: str | None) -> str | None:
    return one_line(value)[:100] or None if value else None


def import_csv(store: Store, path: Path, now: datetime, *, extra_list: str | None = None,
               known_lists: set[str] | None = None, progress: Progress | None = None,
               forgotten: Callable[[str], bool] | None = None) -> ImportReport:
    """Import good rows, report bad ones (line, reason) without stopping; nothing stored is removed.

    Rows of an unsubscribed, cleaned or blocklisted export go to the suppression list. An address that
    was forgotten (`forgotten(email)`: its keyed hash is on the suppression list) is not imported.
    Memory stays flat whatever the file's size: rows stream from the file to the store in batches, and
    the report keeps the first MAX_KEPT_REJECTS bad rows and counts the others.
    """
    report = ImportReport()
    encoding, lines = sniff(path)
    rows = read_csv(path, extra_list=extra_list, known_lists=known_lists, encoding=encoding)
    first = next(rows, None)  # a file without a usable header fails here, before the progress starts
    held: list[Suppressed] = []

    def suppress_held() -> None:
        for reason in sorted({h.reason for h in held}):
            store.suppress([(h.email, h.detail) for h in held if h.reason == reason], reason, now)
        report.to_suppression += len(held)
        held.clear()

    with (progress or Progress(quiet=True)).task(f"import {path}", total=max(lines - 1, 0)) as task:

        def good() -> Iterator[SubscriberRow]:
            done = 1  # the header
            for line, item in itertools.chain([first] if first else [], rows):
                task.advance(line - done)
                done = line
                if isinstance(item, str):
                    report.reject(line, item)
                elif forgotten is not None and forgotten(item.email):
                    report.forgotten += 1
                elif isinstance(item, Suppressed):
                    held.append(item)
                    if len(held) >= 5000:
                        suppress_held()
                else:
                    yield item
            task.advance(max(lines - done, 0))  # blank lines at the end

        upsert(store, good(), now, report=report)
        suppress_held()
        return report


def write_csv(rows: Iterable[SubscriberRow], out: TextIO) -> int:
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["email", "name", "series", "locale"])
    n = 0
    for r in rows:
        w.writerow([r.email, r.name, ";".join(r.lists), r.locale])
        n += 1
    return n
