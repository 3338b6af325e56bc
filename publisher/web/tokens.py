"""Signed unsubscribe tokens: HMAC-SHA256 over the subscriber's address, keyed by a secret from the environment.

A token is `<base64url(address)>.<base64url(mac)>`. Anything that does not verify (forged, altered,
truncated, another subscriber's address with this mac, garbage) gives the same `None`, so the web
endpoint answers every bad token the same way and leaks nothing about which part was wrong.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _secrets

from publisher.config import secret
from publisher.errors import ConfigError

SECRET_ENV = "PUBLISHER_UNSUBSCRIBE_SECRET"
_DOMAIN = b"publisher-unsubscribe-v1\x00"  # keeps these macs from meaning anything elsewhere


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Makes and checks unsubscribe tokens with one secret."""

    def __init__(self, key: bytes):
        self._mac = hmac.new(key, _DOMAIN, hashlib.sha256)  # copied per token: the key schedule is done once

    def token(self, address: str) -> str:
        """The token for `address` (already normalised)."""
        raw = address.encode("utf-8")
        m = self._mac.copy()
        m.update(raw)
        return f"{_b64(raw)}.{_b64(m.digest())}"

    def verify(self, token: str) -> str | None:
        """The address a genuine token was made for, or None for anything else."""
        try:
            payload, mac = token.strip().split(".", 1)
            raw = _unb64(payload)
            given = _unb64(mac)
            address = raw.decode("utf-8")
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raw, given, address = b"", b"", None
        m = self._mac.copy()
        m.update(raw)
        # always compare, even for garbage, so a bad token takes the same path as a wrong mac
        ok = hmac.compare_digest(m.digest(), given)
        return address if ok and address else None


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
