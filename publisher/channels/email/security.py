"""How we prove who we are to the SMTP relay and check who it is: the password, TLS, certificate errors.

The password comes from $PUBLISHER_SMTP_PASSWORD only. TLS always verifies the relay's certificate
and host name; there is deliberately no setting to turn that off. [smtp].ca_file (resolved against
settings.toml's folder when the settings are loaded) replaces the system trust store with the one CA
of a relay that has a private CA.
"""

from __future__ import annotations

import base64
import ssl

from publisher.config import SmtpSettings, secret
from publisher.errors import ConfigError, DeliveryError

PASSWORD_ENV = "PUBLISHER_SMTP_PASSWORD"
RERUN = "then rerun the same command (sent mail is skipped)"


def password_for(settings: SmtpSettings) -> str | None:
    """The relay password, from $PUBLISHER_SMTP_PASSWORD only; required when a username is set.

    Also checks [smtp].ca_file: this is what the email channel calls before it plans anything, so
    a missing secret or CA file stops a send before any ledger row is written.
    """
    pw = secret(PASSWORD_ENV)
    if settings.username and pw is None:
        raise ConfigError(f"[smtp].username is set but {PASSWORD_ENV} is not",
                          hint=f"export {PASSWORD_ENV}=... and rerun the same command")
    tls_context(settings)
    return pw


def scrub(text: str, username: str | None, password: str | None) -> str:
    """`text` with the password, and the forms AUTH LOGIN and PLAIN send it in, replaced by ***.

    A relay's refusal may echo what it received ("535 bad credentials for ..."); that reply reaches
    the terminal, the ledger and the logs, so it is scrubbed before it leaves this seam."""
    if not password:
        return text
    user = username or ""
    forms = [password] + [base64.b64encode(f.encode("utf-8")).decode("ascii")
                          for f in (password, f"\0{user}\0{password}", f"{user}\0{user}\0{password}")]
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "***")
    return text


def tls_context(settings: SmtpSettings) -> ssl.SSLContext | None:
    """The client TLS context for [smtp]: None without TLS; never one that skips verification."""
    if settings.security == "none":
        return None
    try:
        # with cafile, only that CA is trusted (a private relay's); without, the system store
        return ssl.create_default_context(cafile=settings.ca_file)
    except OSError as exc:
        if isinstance(exc, ssl.SSLError):
            why = f"holds no PEM certificate ({exc.reason or exc})"
        else:
            why = f"cannot be read ({exc.strerror or exc})"
        raise ConfigError(f"[smtp].ca_file {settings.ca_file} {why}",
                          hint="point it at the PEM certificate of the CA that signed the relay's certificate") from None


def certificate_error(s: SmtpSettings, exc: ssl.SSLCertVerificationError) -> DeliveryError:
    """The one line for a certificate we cannot trust, with what to change."""
    where = f"{s.host}:{s.port}"
    why = exc.verify_message or exc.reason or str(exc)
    if exc.verify_code in (62, 64):  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
        hint = f"set [smtp].host to a name the relay's certificate was issued for; {RERUN}"
    elif exc.verify_code in (9, 10):  # not yet valid, expired: only the relay's owner can fix it
        hint = f"the relay's certificate must be renewed (check this machine's clock too); {RERUN}"
    elif s.ca_file:
        hint = f"[smtp].ca_file {s.ca_file} is not the CA that signed it: point it at the right CA certificate; {RERUN}"
    else:
        hint = ("if the relay uses a private CA, set [smtp].ca_file to that CA's certificate (PEM), relative to"
                f" settings.toml; {RERUN}")
    return DeliveryError(f"email: cannot trust the TLS certificate of {where} ({why})", hint=hint)
