"""DKIM signing of live sends: RSA-2048 and Ed25519 keys from a PEM file, verified by dkimpy against the
public key served by a stub resolver (the dnsfunc dkimpy accepts), on the bytes aiosmtpd received."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

import dkim
from publisher.channels.email.dkim import dns_record
from support.email_project import ENV, prepared, send_args
from support.smtp_servers import SmtpServer


def _write_key(path, key) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def _resolver(records: dict[str, str]):
    """dkimpy's dnsfunc: the TXT record of a name, as bytes, or None."""
    def txt(name: bytes, timeout: int = 5):
        value = records.get(name.decode("ascii").rstrip("."))
        return value.encode("ascii") if value else None
    return txt


@pytest.mark.parametrize("kind", ["rsa-2048", "ed25519"])
def test_live_send_is_dkim_signed_and_verifies_with_the_published_key(project, kind):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "rsa-2048" \
        else ed25519.Ed25519PrivateKey.generate()
    _write_key(project.root / "dkim.pem", key)
    with SmtpServer() as srv:
        prepared(project, srv.port, 3)
        text = project.settings.read_text(encoding="utf-8")
        project.write_settings(text.replace('unsubscribe_mailto = "unsubscribe@endurance-info.com"',
                                            'unsubscribe_mailto = "unsubscribe@endurance-info.com"\n'
                                            'dkim_key = "dkim.pem"\ndkim_selector = "news2026"'))
        proc = project.cli(*send_args(), env=ENV)
        assert proc.returncode == 0, proc.stderr
        assert len(srv.received) == 3
    dns = _resolver({"news2026._domainkey.endurance-info.com": dns_record(key.public_key())})
    algorithm = b"rsa-sha256" if kind == "rsa-2048" else b"ed25519-sha256"
    for r in srv.received:
        assert r.data.startswith(b"DKIM-Signature: ")
        assert b"a=" + algorithm in r.data.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ")
        assert dkim.verify(r.data, dnsfunc=dns), r.rcpt
        # every copy's own To, tokens and body are covered: a changed byte no longer verifies
        head, body = r.data.split(b"\r\n\r\n", 1)
        assert not dkim.verify(head + b"\r\n\r\n" + body.replace(b"e", b"E", 1), dnsfunc=dns)
        other_to = head.replace(r.rcpt.encode(), b"someone.else@example.org")
        assert other_to != head and not dkim.verify(other_to + b"\r\n\r\n" + body, dnsfunc=dns)
    other = ed25519.Ed25519PrivateKey.generate() if kind == "ed25519" else rsa.generate_private_key(65537, 2048)
    assert not dkim.verify(srv.received[0].data, dnsfunc=_resolver(
        {"news2026._domainkey.endurance-info.com": dns_record(other.public_key())}))


def test_a_short_rsa_key_is_one_line_and_nothing_is_sent(project):
    _write_key(project.root / "dkim.pem", rsa.generate_private_key(public_exponent=65537, key_size=1024))
    with SmtpServer() as srv:
        prepared(project, srv.port, 2)
        text = project.settings.read_text(encoding="utf-8")
        project.write_settings(text.replace('reply_to = ', 'dkim_key = "dkim.pem"\nreply_to = '))
        proc = project.cli(*send_args(), env=ENV)
        assert proc.returncode == 2, proc.stderr
        assert srv.received == []
    assert "[email].dkim_key" in proc.stderr and "1024 bits" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
