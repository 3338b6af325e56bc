"""Signed, opaque tokens, all keyed by one secret from the environment (HMAC-SHA256, one domain per use).

    unsubscribe / preferences   `<sealed address>.<list, base64url>.<mac>`: the address encrypted (a
                                synthetic-IV stream cipher built from HMAC, so the same address always
                                seals the same way and needs no stored key); the list is the campaign
                                the mail came from ("" on the preferences link)
    confirm (double opt-in)     `<sign-up id>.<mac>`: the id is random; expiry and single use live in the store
    form (CSRF)                 `<issued at, unix seconds>.<mac>`: a sign-up page's hidden field
    keyed hash                  `hashed(address)`: what stays of a forgotten address on the suppression list

Anything that does not verify (forged, altered, truncated, another subscriber's, garbage) gives the
same `None`, so the web endpoints answer every bad token the same way and leak nothing about which part
was wrong. Links sent before opaque tokens (`<base64url(address)>.<mac>`) still verify with
`legacy_address` and unsubscribe from everything, as they did.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _secrets
from dataclasses import dataclass

from publisher.config import secret
from publisher.errors import ConfigError

SECRET_ENV = "PUBLISHER_UNSUBSCRIBE_SECRET"
_LEGACY = b"publisher-unsubscribe-v1\x00"  # the address-carrying tokens of earlier versions
_LINK = b"publisher-link-v2\x00"
_CONFIRM = b"publisher-confirm-v1\x00"
_FORM = b"publisher-form-v1\x00"
_HASH = b"publisher-forgotten-v1\x00"
_IV = b"publisher-seal-iv-v1\x00"
_STREAM = b"publisher-seal-stream-v1\x00"
_IV_BYTES = 12
_MAC_BYTES = 16  # 128 bits: forging one is out of reach, and links stay short


def _xor(data: bytes, stream: bytes) -> bytes:
    """`data` XOR the first len(data) bytes of `stream`, as whole integers (a byte loop costs ten times more)."""
    n = len(data)
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream[:n], "big")).to_bytes(n, "big")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class LinkToken:
    email: str  # the subscriber's address, unsealed
    list: str  # the campaign list the link unsubscribes from; "" for the preferences link


class Signer:
    """Makes and checks every token with one secret."""

    def __init__(self, key: bytes):
        self._macs = {d: hmac.new(key, d, hashlib.sha256) for d in (_LEGACY, _LINK, _CONFIRM, _FORM, _HASH, _IV, _STREAM)}

    def _mac(self, domain: bytes, *parts: bytes) -> bytes:
        m = self._macs[domain].copy()  # the key schedule is done once
        # lengths first: ("ab", "c") and ("a", "bc") differ; one update for all (a send makes millions)
        m.update(b"".join(len(p).to_bytes(4, "big") + p for p in parts))
        return m.digest()

    def _check(self, domain: bytes, given_b64: str, *parts: bytes) -> bool:
        try:
            given = _unb64(given_b64)
        except (ValueError, binascii.Error):
            given = b""
        if _b64(given) != given_b64:  # one spelling per mac: base64's spare bits must not make variants
            given = b""
        # always compare, even for garbage, so a bad token takes the same path as a wrong mac
        return hmac.compare_digest(self._mac(domain, *parts)[:_MAC_BYTES], given)

    # -- unsubscribe and preferences links --------------------------------------------------------

    def _stream(self, iv: bytes, n: int) -> bytes:
        out = b""
        block = 0
        while len(out) < n:
            out += self._mac(_STREAM, iv, block.to_bytes(4, "big"))
            block += 1
        return out[:n]

    def _seal(self, address: str) -> bytes:
        raw = address.encode("utf-8")
        iv = self._mac(_IV, raw)[:_IV_BYTES]  # synthetic: the same address seals the same way, nothing to store
        return iv + _xor(raw, self._stream(iv, len(raw)))

    def _unseal(self, sealed: bytes) -> str | None:
        iv, body = sealed[:_IV_BYTES], sealed[_IV_BYTES:]
        try:
            return _xor(body, self._stream(iv, len(body))).decode("utf-8")
        except UnicodeDecodeError:
            return None

    def link(self, address: str, list_name: str = "") -> str:
        """The token of a subscriber's unsubscribe link for `list_name` (or its preferences link)."""
        return self.links(address, list_name)[0]

    def links(self, address: str, *list_names: str) -> list[str]:
        """`link(address, name)` for each name, the address sealed once (a message carries two links)."""
        sealed = self._seal(address)
        head = _b64(sealed)
        out = []
        for name in list_names:
            lst = name.encode("utf-8")
            out.append(f"{head}.{_b64(lst)}.{_b64(self._mac(_LINK, sealed, lst)[:_MAC_BYTES])}")
        return out

    def verify_link(self, token: str) -> LinkToken | None:
        """What a genuine link token names, or None for anything else."""
        parts = token.strip().split(".")
        try:
            sealed, lst = _unb64(parts[0]), _unb64(parts[1])
            mac = parts[2] if len(parts) == 3 else ""
            lst.decode("utf-8")
        except (IndexError, ValueError, binascii.Error, UnicodeError):
            sealed, lst, mac = b"", b"", ""
        if not self._check(_LINK, mac, sealed, lst) or len(sealed) <= _IV_BYTES:
            return None
        address = self._unseal(sealed)
        return LinkToken(address, lst.decode("utf-8")) if address else None

    def legacy_address(self, token: str) -> str | None:
        """The address of a token made before links were opaque (still in old mails), or None."""
        try:
            payload, mac = token.strip().split(".")
            raw = _unb64(payload)
            given = _unb64(mac)
            address = raw.decode("utf-8")
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raw, given, address = b"", b"", None
        m = self._macs[_LEGACY].copy()
        m.update(raw)
        ok = hmac.compare_digest(m.digest(), given)
        return address if ok and address else None

    # -- confirmation links -----------------------------------------------------------------------

    def confirm(self, signup_id: str) -> str:
        return f"{signup_id}.{_b64(self._mac(_CONFIRM, signup_id.encode('ascii'))[:_MAC_BYTES])}"

    def verify_confirm(self, token: str) -> str | None:
        """The sign-up id of a genuine confirmation token (whether it is still valid is the store's say)."""
        signup_id, _, mac = token.strip().partition(".")
        try:
            raw = signup_id.encode("ascii")
        except UnicodeError:
            raw, signup_id = b"", ""
        return signup_id if self._check(_CONFIRM, mac, raw) and signup_id else None

    # -- forms and hashes -------------------------------------------------------------------------

    def form(self, issued: int) -> str:
        """The hidden CSRF field of a form page served at `issued` (unix seconds)."""
        return f"{issued}.{_b64(self._mac(_FORM, str(issued).encode())[:_MAC_BYTES])}"

    def form_issued(self, token: str) -> int | None:
        """When a genuine form token was issued, or None."""
        issued, _, mac = token.strip().partition(".")
        if not issued.isdigit() or len(issued) > 12:
            issued = "0"
            mac = ""
        return int(issued) if self._check(_FORM, mac, issued.encode()) else None

    def hashed(self, address: str) -> str:
        """The keyed hash kept of a forgotten address: matches it again, cannot be turned back into it."""
        return self._mac(_HASH, address.encode("utf-8")).hex()


def new_id() -> str:
    """A random id for a sign-up link (128 bits)."""
    return _secrets.token_urlsafe(16)


def signer_from_env(*, required: bool, purpose: str = "unsubscribe links") -> Signer:
    """The Signer keyed by $PUBLISHER_UNSUBSCRIBE_SECRET; without it, a throw-away key when not required."""
    value = secret(SECRET_ENV)
    if value is None:
        if required:
            raise ConfigError(f"{SECRET_ENV} is not set and {purpose} cannot work without it",
                              hint=f"export {SECRET_ENV}=<a long random string> (e.g. from 'python -c \"import secrets; print(secrets.token_urlsafe(32))\"')")
        # outbox runs and test copies: links are shown but never need to verify later
        return Signer(_secrets.token_bytes(32))
    if len(value) < 16:
        raise ConfigError(f"{SECRET_ENV} is too short (at least 16 characters)", hint="use a long random string")
    return Signer(value.encode("utf-8"))
