"""A reader's rights: everything held about an address (`subscribers show`), and erasing it (`subscribers forget`).

Forgetting reaches every place an address is kept: the subscriber row and its lists, consent records,
sign-ups, ledger targets, the wire journals, and the outbox files (.eml written for it). What remains is
its keyed hash (HMAC with PUBLISHER_UNSUBSCRIBE_SECRET): on the suppression list when the address was
suppressed (so an old export does not bring back someone who unsubscribed or bounced), and as the target
of its ledger rows (so edition counts still add up). The hash cannot be turned back into the address.
"""

from __future__ import annotations

import os
from datetime import datetime
from dataclasses import dataclass
from pathlib import Path

from publisher.config import Settings
from publisher.errors import LockedError
from publisher.store.audience import HASH_PREFIX, Forgotten, delivery_editions, forget, hashed_suppressions, person
from publisher.store.db import Store
from publisher.text import slug
from publisher.web.tokens import Signer


def show(store: Store, email: str, signer: Signer | None) -> dict:
    """Everything held about `email`, and whether its forgotten hash is on the suppression list (needs the signer)."""
    data = person(store, email)
    data["suppressed_as_forgotten"] = hashed_suppressions(store).get(signer.hashed(email)) if signer else None
    return data


@dataclass(frozen=True)
class Erasure:
    store: Forgotten
    journal_lines: int
    files: list[Path]


def erase(settings: Settings, store: Store, email: str, signer: Signer, now: datetime) -> Erasure:
    """Forget `email` everywhere; the store first, so nothing can plan it again while files are cleaned.

    The send lease of every edition that has a row for the address is held meanwhile: a send appending
    to a wire journal while it is rewritten would lose lines, and a line lost is a message sent twice.
    A send that runs now makes this raise LockedError (naming it) before anything is erased."""
    hashed = signer.hashed(email)
    held: list[str] = []
    try:
        for key in delivery_editions(store, email):
            try:
                store.acquire_lease(f"send:{key}", now)
            except LockedError as exc:
                raise LockedError(f"subscribers forget: a send of {key} is running ({exc.message}); nothing was erased",
                                  hint=f"rerun 'publisher subscribers forget {email}' when it is done") from None
            held.append(f"send:{key}")
        done = forget(store, email, hashed)
        lines = _rewrite_journals(settings.state_dir / "journal", email, HASH_PREFIX + hashed)
    finally:
        for name in held:
            store.release_lease(name)
    name = f"{slug(email)}.eml"
    outbox = settings.path(settings.publisher.outbox)
    files = sorted(p for p in outbox.rglob(name) if p.is_file()) if outbox.is_dir() else []
    for p in files:
        p.unlink()
    return Erasure(done, lines, files)


def _rewrite_journals(folder: Path, email: str, replacement: str) -> int:
    """The address becomes its hash in every journal line (the ledger rows carry the hash too, so a
    restart still settles them); each file is replaced atomically. Returns the lines changed."""
    if not folder.is_dir():
        return 0
    changed = 0
    for path in sorted(folder.glob("*.log")):
        out, n = [], 0
        with path.open("rb") as fh:
            for line in fh:
                fields = line.split(b"\t")
                if len(fields) > 1 and fields[1].rstrip(b"\n").decode("utf-8", "replace") == email:
                    fields[1] = replacement.encode("ascii") + (b"\n" if len(fields) == 2 else b"")
                    n += 1
                out.append(b"\t".join(fields))
        if n:
            tmp = path.with_suffix(".forget")
            tmp.write_bytes(b"".join(out))
            os.replace(tmp, path)
            changed += n
    return changed
