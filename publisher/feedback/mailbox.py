"""`publisher bounces`: read the bounce mailbox over IMAP, act on what it says, move what was understood.

Safe by construction for a mailbox that is also used for other mail:
- a message is fetched with BODY.PEEK (its \\Seen flag stays as it was);
- what was understood (a bounce, a complaint, an unsubscribe, a delay warning, an auto-reply) is
  recorded in the store first, then MOVEd (RFC 6851) to [bounces].processed_folder; a crash between the
  two reads it again next time, and the store counts a report once (keyed by its Message-ID);
- nothing is ever deleted: without MOVE, the message is COPYd and flagged \\Deleted, then removed with
  UID EXPUNGE of that one UID only (RFC 4315), or, without UIDPLUS either, left in place and marked with
  a keyword so it is not counted twice;
- what it does not understand, and reports whose token does not verify, are left where they are, counted.
"""

from __future__ import annotations

import hashlib
import imaplib
import logging
import re
import ssl
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from publisher.config import BouncesSettings, secret
from publisher.errors import ConfigError, DeliveryError
from publisher.feedback.apply import resolve
from publisher.feedback.classify import classify, parse
from publisher.feedback.tokens import TokenSigner
from publisher.store.db import Store
from publisher.store.feedback import record
from publisher.web.tokens import Signer

log = logging.getLogger("publisher")
PASSWORD_ENV = "PUBLISHER_BOUNCES_PASSWORD"
DONE_KEYWORD = "$PublisherProcessed"  # only where the server can neither MOVE nor UID EXPUNGE
RERUN = "then rerun 'publisher bounces'"


@dataclass
class MailboxReport:
    """What one pass over the mailbox found and did."""

    read: int = 0
    kinds: Counter = field(default_factory=Counter)  # verdict kind -> messages
    moved: int = 0
    left_unknown: int = 0  # not understood: left in place
    left_refused: int = 0  # a report whose token did not verify: left in place
    suppressed: list[tuple[str, str]] = field(default_factory=list)

    def line(self, folder: str, processed: str) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.kinds.items()) if k != "unknown")
        return (f"bounces: {self.read} message(s) read in {folder}" + (f" ({kinds})" if kinds else "") +
                f"; {self.moved} moved to {processed}; {len(self.suppressed)} address(es) suppressed; left in {folder}:"
                f" {self.left_unknown} not understood, {self.left_refused} with a token that does not verify")


def password(settings: BouncesSettings) -> str:
    pw = secret(PASSWORD_ENV)
    if pw is None:
        raise ConfigError(f"[bounces].username is set but {PASSWORD_ENV} is not", hint=f"export {PASSWORD_ENV}=... and {RERUN}")
    return pw


def connect(s: BouncesSettings, pw: str) -> imaplib.IMAP4:
    """A logged-in IMAP session over TLS (IMAPS or STARTTLS); the certificate and host name always verified."""
    where = f"{s.host}:{s.port}"
    try:
        ctx = ssl.create_default_context(cafile=s.ca_file)
    except OSError as exc:
        raise ConfigError(f"[bounces].ca_file {s.ca_file} cannot be used ({exc})", hint="point it at a PEM CA certificate") from None
    try:
        if s.security == "tls":
            imap = imaplib.IMAP4_SSL(s.host, s.port, ssl_context=ctx, timeout=s.timeout)
        else:
            imap = imaplib.IMAP4(s.host, s.port, timeout=s.timeout)
            imap.starttls(ssl_context=ctx)
    except ssl.SSLCertVerificationError as exc:
        raise DeliveryError(f"bounces: the certificate of {where} cannot be trusted ({exc.verify_message or exc})",
                            hint=f"set [bounces].ca_file to the CA that signed it, {RERUN}") from None
    except (OSError, imaplib.IMAP4.error) as exc:
        raise DeliveryError(f"bounces: cannot open an IMAP session with {where} ({exc})",
                            hint=f"check [bounces].host, .port and .security, {RERUN}") from None
    try:
        imap.login(s.username, pw)
    except imaplib.IMAP4.error:
        imap.shutdown()
        raise DeliveryError(f"bounces: {where} refused the login of {s.username}",
                            hint=f"check [bounces].username and {PASSWORD_ENV}, {RERUN}") from None
    return imap


def process(store: Store, s: BouncesSettings, now: datetime, tokens: TokenSigner, web: Signer,
            advance: Callable[[int], None] = lambda n: None) -> MailboxReport:
    """One pass over [bounces].folder: classify every message, record, move what was understood."""
    report = MailboxReport()
    imap = connect(s, password(s))
    try:
        _check(imap.select(_quote(s.folder)), f"cannot open the folder {s.folder!r}", s)
        typ, data = imap.capability()  # after login: servers list MOVE and UIDPLUS only then
        caps = set(data[0].decode("ascii", "replace").upper().split()) if typ == "OK" and data and data[0] else set(imap.capabilities)
        _ensure_folder(imap, s.processed_folder)
        typ, data = imap.uid("SEARCH", None, "NOT", "KEYWORD", DONE_KEYWORD)
        _check((typ, data), "cannot list the messages", s)
        uids = data[0].split() if data and data[0] else []
        for uid in uids:
            raw = _fetch(imap, uid, s)
            if raw is None:
                continue
            report.read += 1
            verdict = classify(raw)
            report.kinds[verdict.kind] += 1
            if verdict.kind == "unknown":
                report.left_unknown += 1
            else:
                resolved = resolve(store, verdict, _source(raw), tokens, web)
                if verdict.acts and not resolved.reports:
                    report.left_refused += 1
                    log.info("bounces: %s message %s: no token that verifies; left in %s", verdict.kind,
                             uid.decode(), s.folder)
                else:
                    report.suppressed += record(store, resolved.reports, now, s.soft_limit)
                    _move(imap, uid, s.processed_folder, caps)
                    report.moved += 1
            advance(1)
        imap.close()
    except (OSError, imaplib.IMAP4.abort) as exc:
        raise DeliveryError(f"bounces: the IMAP session with {s.host}:{s.port} failed ({exc}); {report.moved} message(s)"
                            " were handled before", hint=RERUN) from None
    finally:
        try:
            imap.logout()
        except (OSError, imaplib.IMAP4.error):
            pass
    return report


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check(result: tuple, what: str, s: BouncesSettings) -> None:
    typ, data = result
    if typ != "OK":
        detail = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
        raise DeliveryError(f"bounces: {s.host}:{s.port}: {what} ({detail})", hint=f"check [bounces] in settings.toml, {RERUN}")


def _ensure_folder(imap: imaplib.IMAP4, name: str) -> None:
    typ, data = imap.list('""', _quote(name))
    if typ == "OK" and any(d for d in data if d):
        return
    typ, data = imap.create(_quote(name))
    if typ != "OK":
        raise DeliveryError(f"bounces: cannot create the folder {name!r} ({data})",
                            hint=f"create it by hand or change [bounces].processed_folder, {RERUN}")


def _fetch(imap: imaplib.IMAP4, uid: bytes, s: BouncesSettings) -> bytes | None:
    typ, data = imap.uid("FETCH", uid, "(BODY.PEEK[])")
    _check((typ, data), f"cannot read message {uid.decode()}", s)
    for item in data:
        if isinstance(item, tuple) and len(item) == 2:
            return item[1]
    return None  # expunged meanwhile by another client


def _move(imap: imaplib.IMAP4, uid: bytes, folder: str, caps: set[str]) -> None:
    if "MOVE" in caps:
        typ, data = imap.uid("MOVE", uid, _quote(folder))
        if typ == "OK":
            return
    typ, data = imap.uid("COPY", uid, _quote(folder))
    if typ != "OK":
        raise imaplib.IMAP4.abort(f"COPY to {folder} refused ({data})")
    if "UIDPLUS" in caps:
        imap.uid("STORE", uid, "+FLAGS.SILENT", r"(\Deleted)")
        imap.uid("EXPUNGE", uid)  # this UID only: other \Deleted messages stay
    else:
        imap.uid("STORE", uid, "+FLAGS.SILENT", f"({DONE_KEYWORD})")


def _source(raw: bytes) -> str:
    """The report's id: its Message-ID, or a hash of its bytes when it has none."""
    mid = str(parse(raw).get("Message-ID", "")).strip()
    mid = re.sub(r"\s+", "", mid)
    return f"mail:{mid}" if mid else f"mail:sha256:{hashlib.sha256(raw).hexdigest()}"

