"""The one place smtplib is called: opening a connection, the meaning of each reply, the rate limit.

What a reply means for the ledger:
    250 after DATA                      -> sent
    4xx to RCPT, DATA or the message    -> retry later; counts as an attempt (the relay answered for that
                                           recipient), [smtp].max_attempts of them and it is failed
    421, 4xx to MAIL, a refused connection, a connection that drops before DATA's end was sent
                                        -> deferred: the recipient goes to another connection, and no
                                           attempt is counted (the relay said nothing about the recipient)
    5xx to RCPT or the message          -> failed for that recipient (550/551/553: hard bounce, suppressed)
    the connection drops after the message was sent, before the reply -> unknown (never retried blindly)

Some failures are the settings' fault, not the recipient's, and no retry can fix them: a refused
login, a certificate we cannot trust, a TLS handshake that fails, a server without STARTTLS or AUTH,
a 530 "authentication/TLS required" or a 5xx to our own address at MAIL FROM. Those raise
DeliveryError; the pool stops and every message not yet on the wire stays `planned` for the rerun.
TLS always verifies the server's certificate and host name, against the system trust store or
against [smtp].ca_file only (publisher/channels/email/security.py).

Connections are opened here with smtplib (connect, EHLO, STARTTLS, AUTH: lockstep, where smtplib's
error mapping is worth having); the messages then go through publisher/channels/email/pool.py, which drives
every open connection from one thread.
"""

from __future__ import annotations

import enum
import re
import smtplib
import socket
import ssl
from dataclasses import dataclass, replace

from publisher.channels.email.security import PASSWORD_ENV, RERUN, certificate_error, scrub, tls_context
from publisher.config import SmtpSettings
from publisher.errors import DeliveryError

HARD_BOUNCE_CODES = (550, 551, 553)
SESSION_REFUSED = (530, 538)  # at MAIL FROM: "authentication required" / "encryption required": our settings


class SmtpOutcome(str, enum.Enum):
    SENT = "sent"
    RETRY = "retry"  # the relay answered 4xx for this recipient: an attempt
    DEFER = "defer"  # nothing said about this recipient (421, drop, refused connection): not an attempt
    FAILED = "failed"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Reply:
    """What became of one message, with the server's words."""

    outcome: SmtpOutcome
    code: int | None
    text: str
    wait: float | None = None  # seconds the server asked us to wait (421 "try again in 60 seconds")

    @property
    def hard_bounce(self) -> bool:
        return self.outcome is SmtpOutcome.FAILED and self.code in HARD_BOUNCE_CODES

    def line(self) -> str:
        return f"{self.code} {self.text}" if self.code else self.text


_UNSAFE = re.compile(r"[\s<>]")
_WAIT = re.compile(r"(\d+)\s*(seconds?|secs?|s\b|minutes?|mins?|m\b)", re.I)


def _text(msg: bytes | str) -> str:
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    return " ".join(msg.split())[:300]


def classify(code: int, msg: bytes | str, step: str) -> Reply:
    """The meaning of an SMTP reply to MAIL, RCPT, DATA or the end of the message."""
    if code == 250 and isinstance(msg, bytes) and len(msg) < 300 and msg.isascii() and b"\r" not in msg and b"\n" not in msg:
        return Reply(SmtpOutcome.SENT, code, msg.decode("ascii").strip())  # the common case, cheaply
    text = _text(msg)
    if 200 <= code < 400:
        return Reply(SmtpOutcome.SENT, code, text)
    if 400 <= code < 500:
        if code == 421:  # the server is closing the session: a statement about itself, not the recipient
            wait = None
            if m := _WAIT.search(text):
                wait = float(m.group(1)) * (60 if m.group(2).lower().startswith("m") else 1)
            return Reply(SmtpOutcome.DEFER, code, f"{step}: {text}", wait)
        return Reply(SmtpOutcome.DEFER if step == "MAIL FROM" else SmtpOutcome.RETRY, code, f"{step}: {text}")
    return Reply(SmtpOutcome.FAILED, code, f"{step}: {text}")


class Connection:
    """One SMTP session, reused for many messages."""

    def __init__(self, settings: SmtpSettings, password: str | None, context: ssl.SSLContext | None = None):
        self.s, self.password = settings, password
        self.context = context or tls_context(settings)  # one per pool: loading the trust store costs
        self.smtp: smtplib.SMTP | None = None
        self.pipelining = False
        self.where = f"{settings.host}:{settings.port}"
        self.step = "connect"  # the step of open() under way, for its error messages

    def open(self) -> Reply | None:
        """Connect, secure and log in; a Reply (deferred) when the server cannot be reached, None when ready.

        Raises DeliveryError for what only a change of settings can fix (see the module docstring).
        """
        s, where = self.s, self.where
        try:
            self._handshake()
        except smtplib.SMTPAuthenticationError as exc:
            self.close()
            raw = exc.smtp_error
            said = scrub(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw), s.username, self.password)
            if 400 <= exc.smtp_code < 500:  # 454 "temporary authentication failure": the relay's trouble
                return replace(classify(exc.smtp_code, said, "login"), outcome=SmtpOutcome.DEFER)
            raise DeliveryError(f"email: login refused by {where} ({exc.smtp_code} {_text(said)})",
                                hint=f"check [smtp].username and {PASSWORD_ENV}, {RERUN}") from None
        except smtplib.SMTPNotSupportedError:
            self.close()
            if self.step == "starttls":
                raise DeliveryError(f"email: {where} does not offer STARTTLS ([smtp].security = 'starttls')",
                                    hint="if this port expects TLS from the first byte (often 465), set [smtp].security"
                                         f" = 'tls'; {RERUN}") from None
            raise DeliveryError(f"email: {where} does not offer login (AUTH) to [smtp].username {s.username!r}"
                                f" over [smtp].security = {s.security!r}",
                                hint="many relays offer AUTH only after TLS: set [smtp].security = 'starttls' or 'tls'"
                                     f" (or remove [smtp].username if the relay needs no login); {RERUN}") from None
        except ssl.SSLCertVerificationError as exc:
            self.close()
            raise certificate_error(s, exc) from None
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:  # the peer hung up mid-handshake: maybe busy
            self.close()
            return Reply(SmtpOutcome.DEFER, None, f"{self.step}: {where} closed the connection during the TLS handshake ({exc})"[:300])
        except ssl.SSLError as exc:
            self.close()
            raise DeliveryError(f"email: TLS handshake with {where} failed ({exc.reason or exc}) with [smtp].security = {s.security!r}",
                                hint="check [smtp].security and [smtp].port: 'tls' is TLS from the first byte (often"
                                     f" port 465), 'starttls' upgrades a plain session (often 587); {RERUN}") from None
        except smtplib.SMTPConnectError as exc:
            self.close()
            reply = classify(exc.smtp_code, exc.smtp_error, "connect") if exc.smtp_code >= 400 else \
                Reply(SmtpOutcome.DEFER, None, f"connect: {_text(exc.smtp_error)}")
            return replace(reply, outcome=SmtpOutcome.DEFER)  # whatever it said, it said nothing of a recipient
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            said = scrub(str(exc), s.username, self.password)  # an error during AUTH may carry the server's echo
            return Reply(SmtpOutcome.DEFER, None, f"cannot connect to {where}: {exc.__class__.__name__}: {said}"[:300])
        self.pipelining = self.smtp.has_extn("pipelining")
        return None

    def _handshake(self) -> None:
        """Connect, EHLO, STARTTLS and login as the settings say; `self.step` names the step under way."""
        s = self.s
        self.step = "connect"
        if s.security == "tls":
            self.smtp = smtplib.SMTP_SSL(s.host, s.port, local_hostname=s.helo_name, timeout=s.timeout,
                                         context=self.context)
        else:
            self.smtp = smtplib.SMTP(s.host, s.port, local_hostname=s.helo_name, timeout=s.timeout)
        self.smtp.ehlo()
        if s.security == "starttls":
            self.step = "starttls"
            self.smtp.starttls(context=self.context)
            self.smtp.ehlo()
        if s.username:
            self.step = "login"
            self.smtp.login(s.username, self.password or "")
        # our writes are whole commands or whole messages: never hold one back for an ACK (Nagle)
        self.smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @property
    def ready(self) -> bool:
        return self.smtp is not None

    def close(self) -> None:
        """QUIT and hang up (a connection the pool never used, or one that failed to open)."""
        smtp, self.smtp = self.smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            try:
                smtp.close()
            except OSError:
                pass


def envelope(sender: str, rcpt: str) -> bytes:
    """MAIL, RCPT and DATA in one piece (PIPELINING); addresses are normalised, never with spaces or CR/LF."""
    if _UNSAFE.search(rcpt) or _UNSAFE.search(sender):
        raise ValueError(f"an address with spaces or angle brackets: {rcpt!r}")
    return f"MAIL FROM:<{sender}>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n".encode("ascii")


class RateLimit:
    """Messages spaced so that neither the per-second nor the per-hour limit is passed (0 = none)."""

    def __init__(self, per_second: float, per_hour: int):
        gaps = [1.0 / per_second if per_second > 0 else 0.0, 3600.0 / per_hour if per_hour > 0 else 0.0]
        self.gap = max(gaps)
        self._next = 0.0

    def take(self, now: float) -> float:
        """0 and the slot is ours when a message may go at `now` (monotonic); else the seconds to wait."""
        if self.gap <= 0:
            return 0.0
        if self._next > now:
            return self._next - now
        self._next = now + self.gap
        return 0.0
