"""Real SMTP servers for the tests: aiosmtpd on 127.0.0.1, port 0, recording what it accepted.

`SmtpServer(faults=...)` answers per recipient and per attempt from a script, so a test can make
one address get 421, 450, 451 or 550, or have the connection dropped before or after the message:

    faults = {"a@example.org": ["rcpt 450 4.2.1 Mailbox busy", "ok"],
              "b@example.org": ["data 550 5.1.1 No such user"],
              "c@example.org": ["drop-rcpt", "ok"], "d@example.org": ["drop-data"]}

Actions: "ok"; "rcpt|data <reply>" answers that step with the reply; "drop-rcpt" closes the
connection at RCPT; "drop-data" reads the whole message and closes without answering (the client
cannot know if it was accepted; nothing is recorded). A list's last action repeats. The server offers
PIPELINING unless `pipelining=False`; `srv.handler.mail_reply = "553 ..."` answers every MAIL FROM with it.

TLS and login, for real: `make_certs(folder)` writes a throw-away CA and server certificates (for
127.0.0.1 and localhost) at test time; `SmtpServer(starttls=certs.server)` requires STARTTLS,
`SmtpServer(smtps=certs.server)` speaks TLS from the first byte, and `accounts={"user": "pw"}`
requires AUTH (PLAIN/LOGIN, after TLS) and records every attempt in `srv.logins`. Each Received
says whether its session was encrypted (`tls`, e.g. "TLSv1.3"), who logged in and its EHLO name.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import ipaddress
import ssl
import threading
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


@dataclass
class Received:
    mail_from: str
    rcpt: str
    data: bytes
    tls: str | None = None  # the session's TLS version ("TLSv1.3"), None in clear
    login: str | None = None  # the username the session logged in with
    helo: str | None = None  # the name the client gave in EHLO/HELO

    def message(self) -> EmailMessage:
        return BytesParser(policy=policy.default).parsebytes(self.data)


@dataclass
class _Handler:
    faults: dict[str, list[str]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    attempts: collections.Counter = field(default_factory=collections.Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    delay: float = 0.0  # seconds before answering each DATA: a slow server keeps a send running
    pipelining: bool = True  # offer PIPELINING (RFC 2920) in EHLO, as Postfix, Exim and the ESPs do
    sessions: int = 0  # SMTP sessions opened (EHLO/HELO seen)
    mail_reply: str | None = None  # answer every MAIL FROM with this (e.g. "553 5.7.1 Sender address rejected")

    def _action(self, rcpt: str, bump: bool) -> str:
        script = self.faults.get(rcpt)
        if not script:
            return "ok"
        with self.lock:
            n = self.attempts[rcpt]
            if bump:
                self.attempts[rcpt] += 1
        return script[min(n, len(script) - 1)]

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        action = self._action(address, bump=False)
        if action.startswith("rcpt "):
            self._action(address, bump=True)
            return action[5:]
        if action == "drop-rcpt":
            self._action(address, bump=True)
            server.transport.abort()
            return "250 OK"  # never reaches the client
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        with self.lock:
            self.sessions += 1
        if self.pipelining:  # aiosmtpd reads commands one by one, so pipelined input just works
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        rcpt = envelope.rcpt_tos[0]
        action = self._action(rcpt, bump=True)
        if action.startswith("data "):
            return action[5:]
        if action == "drop-data":
            server.transport.abort()
            return "250 OK"
        tls = server.transport.get_extra_info("ssl_object")  # set after STARTTLS and on SMTPS alike
        login = session.auth_data.login.decode() if session.authenticated else None
        with self.lock:
            self.received.append(Received(envelope.mail_from, rcpt, envelope.original_content or envelope.content,
                                          tls=tls.version() if tls else None, login=login, helo=session.host_name))
        return "250 2.0.0 Ok: queued"


class _Controller(Controller):
    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]  # port 0: learn the real one before connecting
        super()._trigger_server()


@dataclass(frozen=True)
class Login:
    mechanism: str
    username: str
    password: str
    accepted: bool
    tls: bool
    peer: tuple = ()  # the client's (address, port): one per connection


class _Accounts:
    """An aiosmtpd authenticator: accepts the configured username/password pairs, records every attempt."""

    def __init__(self, accounts: dict[str, str]):
        self.accounts = dict(accounts)
        self.attempts: list[Login] = []
        self.lock = threading.Lock()

    def __call__(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        user, pw = auth_data.login.decode(), auth_data.password.decode()
        ok = self.accounts.get(user) == pw
        with self.lock:
            self.attempts.append(Login(mechanism, user, pw, ok, server.transport.get_extra_info("ssl_object") is not None,
                                       tuple(session.peer or ())))
        # handled=False: aiosmtpd itself answers 535 to a refusal (handled=True would leave the client waiting)
        return AuthResult(success=ok, handled=False, auth_data=auth_data)


class SmtpServer:
    """`with SmtpServer() as srv:` -> srv.port, srv.received, srv.count(address).

    `starttls=ctx`: STARTTLS offered and required before MAIL; `smtps=ctx`: implicit TLS (SMTPS);
    `accounts={user: password}`: AUTH required (only after TLS when starttls is used).
    """

    def __init__(self, faults: dict[str, list[str]] | None = None, delay: float = 0.0, *,
                 starttls: ssl.SSLContext | None = None, smtps: ssl.SSLContext | None = None,
                 accounts: dict[str, str] | None = None, pipelining: bool = True):
        self.handler = _Handler(faults=dict(faults or {}), delay=delay, pipelining=pipelining)
        self.auth = _Accounts(accounts or {})
        kwargs: dict = {}
        if starttls is not None:
            kwargs.update(tls_context=starttls, require_starttls=True)
        if smtps is not None:
            kwargs["ssl_context"] = smtps
        if accounts is not None:
            # on SMTPS aiosmtpd does not know the session is encrypted, so it must not insist on STARTTLS
            kwargs.update(authenticator=self.auth, auth_required=True, auth_require_tls=smtps is None)
        self.controller = _Controller(self.handler, hostname="127.0.0.1", port=0, **kwargs)

    def __enter__(self) -> "SmtpServer":
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()

    @property
    def port(self) -> int:
        return self.controller.port

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)

    @property
    def logins(self) -> list[Login]:
        with self.auth.lock:
            return list(self.auth.attempts)

    def counts(self) -> collections.Counter:
        return collections.Counter(r.rcpt for r in self.received)

    def count(self, address: str) -> int:
        return self.counts()[address]

    def settings_toml(self, **extra) -> str:
        """An [smtp] table pointing at this server (no TLS, no login), plus extra keys."""
        lines = ["[smtp]", 'host = "127.0.0.1"', f"port = {self.port}", 'security = "none"']
        for k, v in extra.items():
            lines.append(f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"')
        return "\n".join(lines)


# -- certificates made at test time ----------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    """Throw-away PKI in `folder`: `ca` is the CA file a test puts in [smtp].ca_file."""

    folder: Path
    ca: Path  # the CA that signed `server` and `wrong_host`
    other_ca: Path  # a CA that signed nothing used here
    server: ssl.SSLContext  # server side: a certificate for 127.0.0.1 and localhost, signed by `ca`
    wrong_host: ssl.SSLContext  # signed by `ca`, but for mail.example.org only
    self_signed: ssl.SSLContext  # a certificate for 127.0.0.1 that signs itself


def make_certs(folder: Path) -> Certs:
    """Write a CA, server keys and certificates (PEM) into `folder`; EC keys, so this takes milliseconds."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _ca("publisher test CA")
    other_key, other_cert = _ca("some other CA")
    _write(folder / "ca.pem", ca_cert)
    _write(folder / "other-ca.pem", other_cert)
    server = _leaf(folder, "server", ca_key, ca_cert, ["127.0.0.1", "localhost"])
    wrong = _leaf(folder, "wrong-host", ca_key, ca_cert, ["mail.example.org"])
    own = _leaf(folder, "self-signed", None, None, ["127.0.0.1", "localhost"])
    return Certs(folder, folder / "ca.pem", folder / "other-ca.pem", server, wrong, own)


def _validity():
    # OpenSSL checks certificates against the real clock, so these dates come from it
    now = datetime.datetime.now(datetime.timezone.utc)
    return now - datetime.timedelta(days=1), now + datetime.timedelta(days=2)


def _ca(cn: str):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    start, end = _validity()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def _leaf(folder: Path, stem: str, ca_key, ca_cert, names: list[str]) -> ssl.SSLContext:
    """A server certificate for `names` signed by the CA (or by itself), and a server context using it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    sans = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    start, end = _validity()
    issuer_key = ca_key or key
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject if ca_cert else subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(start).not_valid_after(end)
         .add_extension(x509.SubjectAlternativeName(sans), critical=False)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False))
    cert = b.sign(issuer_key, hashes.SHA256())
    _write(folder / f"{stem}.pem", cert)
    (folder / f"{stem}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(folder / f"{stem}.pem", folder / f"{stem}.key")
    return ctx


def _write(path: Path, cert) -> None:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
