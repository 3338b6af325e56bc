"""DKIM signing of live sends (dkimpy): RSA-2048 or Ed25519, the private key from a PEM file ([email].dkim_key).

The key type decides the algorithm (rsa-sha256 or ed25519-sha256, RFC 8463). Each recipient's copy
differs (its To, its tokens), so each is signed on its own, after `personalise()`; the headers
signed are the ones a receiver shows or a list manager relies on, and the signature is put on top.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from email.utils import parseaddr

from publisher.config import EmailSettings
from publisher.errors import ConfigError

SIGNED_HEADERS = [b"from", b"to", b"subject", b"date", b"message-id", b"reply-to", b"list-id", b"list-unsubscribe",
                  b"list-unsubscribe-post", b"feedback-id", b"mime-version", b"content-type"]
MIN_RSA_BITS = 2048  # Gmail and Yahoo ignore shorter keys; RFC 8301 requires at least 1024


@dataclass(frozen=True)
class DkimSigner:
    """Signs one message at a time with one key."""

    selector: bytes
    domain: bytes
    key: bytes  # what dkimpy takes: PKCS#1 PEM for RSA, the base64 seed for Ed25519
    algorithm: bytes

    def sign(self, message: bytes) -> bytes:
        """The message with its DKIM-Signature header first."""
        import dkim  # here, not at the top: dkimpy, dnspython, PyNaCl and cryptography cost a send without
        # DKIM a quarter of a second and 40 MB; imported once, by the first signed message

        header = dkim.sign(message, self.selector, self.domain, self.key, signature_algorithm=self.algorithm,
                           include_headers=SIGNED_HEADERS, linesep=b"\r\n")
        return header + message


def load(em: EmailSettings) -> DkimSigner | None:
    """The signer for [email].dkim_key (already resolved to an absolute path), or None without one."""
    if not em.dkim_key:
        return None
    from cryptography.hazmat.primitives import serialization  # only with a key: see DkimSigner.sign
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    where = f"[email].dkim_key {em.dkim_key}"
    try:
        with open(em.dkim_key, "rb") as fh:
            key = serialization.load_pem_private_key(fh.read(), password=None)
    except OSError as exc:
        raise ConfigError(f"{where} cannot be read ({exc.strerror or exc})", hint="point it at the PEM private key") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where} is not an unencrypted PEM private key ({exc})",
                          hint="write it with 'openssl genpkey -algorithm ed25519' or 'openssl genrsa 2048'") from None
    domain = (em.dkim_domain or parseaddr(em.sender)[1].rpartition("@")[2]).encode("ascii")
    if isinstance(key, ed25519.Ed25519PrivateKey):
        seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
        return DkimSigner(em.dkim_selector.encode("ascii"), domain, base64.b64encode(seed), b"ed25519-sha256")
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise ConfigError(f"{where} is an RSA key of {key.key_size} bits; receivers want at least {MIN_RSA_BITS}",
                              hint="make a new one with 'openssl genrsa 2048' and publish its public half")
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
        return DkimSigner(em.dkim_selector.encode("ascii"), domain, pem, b"rsa-sha256")
    raise ConfigError(f"{where} is neither an RSA nor an Ed25519 key", hint="DKIM signs with RSA-2048 or Ed25519 keys")


def dns_record(public_key) -> str:
    """The TXT record to publish at <selector>._domainkey.<domain> for a public key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    if isinstance(public_key, ed25519.Ed25519PublicKey):
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode('ascii')}"
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}"
