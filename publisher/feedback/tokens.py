"""Signed tokens in the return path (`bounces+TOKEN@domain`) and the mailto unsubscribe address.

A token is `<kind><edition number>-<subscriber id>-<mac>`, all lower case (some MTAs lower-case the local
part): `kind` is "b" (bounce, the return path) or "u" (unsubscribe, the mailto address); the numbers
are base 36; the mac is 64 bits of HMAC-SHA256, in hex, over the kind, the edition key and the address.
It is short (a local part must stay under 64 characters) and it names exactly one recipient of one
edition, so a forged bounce or a forged From cannot act on anyone else: without the secret
($PUBLISHER_UNSUBSCRIBE_SECRET) no other token verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets as _secrets
from dataclasses import dataclass

from publisher.config import secret
from publisher.web.tokens import SECRET_ENV, Signer, signer_from_env

_DOMAIN = b"publisher-return-path-v1\x00"
TOKEN_RE = re.compile(r"\b([bu])([0-9a-z]{1,8})-([0-9a-z]{1,12})-([0-9a-f]{16})\b")
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def _b36(n: int) -> str:
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _DIGITS[r] + out
        if not n:
            return out


@dataclass(frozen=True)
class Token:
    """A token as found in a message, not yet verified."""

    kind: str  # "b" or "u"
    edition_number: int
    subscriber_id: int
    mac: str


class TokenSigner:
    """Makes and checks return-path and mailto tokens with one secret."""

    def __init__(self, key: bytes):
        self._mac = hmac.new(key, _DOMAIN, hashlib.sha256)

    def _digest(self, kind: str, edition_key: str, email: str) -> str:
        m = self._mac.copy()
        m.update(f"{kind}\x00{edition_key}\x00{email.lower()}".encode("utf-8"))
        return m.hexdigest()[:16]  # hex: computed in C, and the same in any letter case

    def token(self, kind: str, edition_number: int, subscriber_id: int, edition_key: str, email: str) -> str:
        return f"{kind}{_b36(edition_number)}-{_b36(subscriber_id)}-{self._digest(kind, edition_key, email)}"

    def verify(self, token: Token, edition_key: str, email: str) -> bool:
        """True if `token` was made by us for this edition and address."""
        return hmac.compare_digest(self._digest(token.kind, edition_key, email), token.mac)


def tagged(address: str, token: str) -> str:
    """`local+token@domain` from `local@domain`."""
    local, _, domain = address.rpartition("@")
    return f"{local}+{token}@{domain}"


def find_tokens(text: str, kind: str | None = None) -> list[Token]:
    """Every token-shaped string in `text` (headers, a subject, a whole report), in order, without repeats."""
    seen: dict[Token, None] = {}
    for k, ed, sid, mac in TOKEN_RE.findall(text.lower()):
        if kind is None or k == kind:
            seen[Token(k, int(ed, 36), int(sid, 36), mac)] = None
    return list(seen)


def signers_from_env(*, required: bool) -> tuple[TokenSigner, Signer]:
    """The return-path/mailto signer and the https-link signer, both keyed by $PUBLISHER_UNSUBSCRIBE_SECRET.

    Not required (outbox runs, test copies): a throw-away key, as for the links.
    """
    web = signer_from_env(required=required, purpose="signed return paths and unsubscribe addresses")
    value = secret(SECRET_ENV)
    return TokenSigner(value.encode("utf-8") if value else _secrets.token_bytes(32)), web
