"""STARTTLS, implicit TLS and login, for real: aiosmtpd on loopback with certificates made at test time.

The CLI sends through a relay that requires TLS and AUTH; the server records whether each session
was encrypted and who logged in with which password. Mistakes a user can make (a wrong password, a
certificate from a CA we were not told about, plain SMTP to a relay that wants TLS, a missing secret)
end in one line, exit 4 (2 for a missing secret), nothing marked sent, and a rerun that finishes.
"""

from __future__ import annotations

import base64
import re
import ssl

import pytest

from publisher.app import load_settings
from publisher.channels.email.proof import send_one
from publisher.channels.email.security import password_for, tls_context
from publisher.config import SmtpSettings
from publisher.errors import ConfigError, DeliveryError
from support.email_project import ENV, ledger, prepared, send_args, store_path
from support.smtp_servers import SmtpServer, make_certs

USER = "relay-user"
PASSWORD = "pw-Zq8!relay-3141"
WRONG = "pw-not-this-one-2718"
MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("pki"))


def use_relay(project, port: int, **keys) -> None:
    """Replace the copy's [smtp] table with host 127.0.0.1, `port` and `keys` (after `prepared`)."""
    lines = ["[smtp]", 'host = "127.0.0.1"', f"port = {port}"]
    lines += [f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v!r}" for k, v in keys.items()]
    text = re.sub(r"(?ms)^\[smtp\]\n.*?(?=^\[)", "\n".join(lines) + "\n\n", project.settings.read_text(encoding="utf-8"))
    project.write_settings(text)


def copy_ca(project, certs) -> str:
    """The CA file inside the project, named relative to settings.toml as a user would."""
    (project.root / "certs").mkdir(exist_ok=True)
    (project.root / "certs" / "relay-ca.pem").write_bytes(certs.ca.read_bytes())
    return "certs/relay-ca.pem"


def secrets_env(password: str | None) -> dict[str, str]:
    return {**ENV, "PUBLISHER_SMTP_PASSWORD": password} if password else dict(ENV)


def assert_nowhere(project, proc, *secrets: str) -> None:
    """Neither the secret nor its base64 forms (AUTH PLAIN/LOGIN) in output, the SQLite files or the journal
    (a send removes its wire journal once the ledger has every outcome: only a stopped one leaves it)."""
    forms = set()
    for s in secrets:
        forms |= {s.encode(), base64.b64encode(s.encode()), base64.b64encode(f"\0{USER}\0{s}".encode())}
    output = (proc.stdout + proc.stderr).encode()
    files = [p for p in (project.root / "var").rglob("*") if p.is_file()]
    assert store_path(project) in files and (project.root / "var" / "journal").is_dir()
    for form in forms:
        assert form not in output
        for path in files:
            assert form not in path.read_bytes(), f"{form!r} found in {path}"


def test_starttls_with_login_delivers_everything_and_the_password_stays_secret(project, certs):
    with SmtpServer(starttls=certs.server, accounts={USER: PASSWORD}) as srv:
        addrs = prepared(project, srv.port, 12)
        use_relay(project, srv.port, security="starttls", username=USER, ca_file=copy_ca(project, certs),
                  helo_name="publisher.test", connections=2)
        proc = project.cli(*send_args(), env=secrets_env(PASSWORD))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "email endurance/2026-W47: 12 sent, 0 already sent" in proc.stdout
        assert srv.counts() == {a: 1 for a in addrs}
        for r in srv.received:  # every message went over an upgraded, logged-in session
            assert r.tls and r.tls.startswith("TLSv1.")
            assert r.login == USER
            assert r.helo == "publisher.test"
        assert 1 <= len({l.peer for l in srv.logins}) == len(srv.logins) <= 2  # one login per connection, reused
        assert all(l.accepted and l.tls and l.username == USER and l.password == PASSWORD for l in srv.logins)
        assert {s for s, _ in ledger(project).values()} == {"sent"}
        assert_nowhere(project, proc, PASSWORD)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # aiosmtpd cannot see SMTPS is TLS
def test_implicit_tls_delivers(project, certs):
    with SmtpServer(smtps=certs.server, accounts={USER: PASSWORD}) as srv:
        addrs = prepared(project, srv.port, 5)
        use_relay(project, srv.port, security="tls", username=USER, ca_file=copy_ca(project, certs))
        proc = project.cli(*send_args(), env=secrets_env(PASSWORD))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert srv.counts() == {a: 1 for a in addrs}
        assert all(r.tls and r.login == USER for r in srv.received)
        assert srv.logins and all(l.accepted and l.tls for l in srv.logins)


def test_wrong_password_stops_with_one_line_and_a_rerun_sends_each_once(project, certs):
    with SmtpServer(starttls=certs.server, accounts={USER: PASSWORD}) as srv:
        addrs = prepared(project, srv.port, 8)
        use_relay(project, srv.port, security="starttls", username=USER, ca_file=copy_ca(project, certs))
        proc = project.cli(*send_args(), env=secrets_env(WRONG))
        assert proc.returncode == 4
        assert "Traceback" not in proc.stdout + proc.stderr
        refused = [l for l in proc.stdout.splitlines() if "login refused" in l]
        assert refused == [f"email: login refused by 127.0.0.1:{srv.port} (535 5.7.8 Authentication credentials invalid);"
                           " check [smtp].username and PUBLISHER_SMTP_PASSWORD, then rerun the same command"
                           " (sent mail is skipped)"]
        assert "rerun 'publisher send endurance'" in proc.stdout
        assert srv.received == []
        assert {s for s, _ in ledger(project).values()} == {"planned"}
        # tried on one connection, not on each of the 4: relays lock out repeated failures
        assert {(l.username, l.password, l.accepted) for l in srv.logins} == {(USER, WRONG, False)}
        assert len({l.peer for l in srv.logins}) == 1
        assert_nowhere(project, proc, WRONG, PASSWORD)

        again = project.cli(*send_args(), env=secrets_env(PASSWORD))
        assert again.returncode == 0, again.stdout + again.stderr
        assert srv.counts() == {a: 1 for a in addrs}
        assert {s for s, _ in ledger(project).values()} == {"sent"}


def test_certificate_from_an_unknown_ca_is_refused_before_login(project, certs):
    with SmtpServer(starttls=certs.server, accounts={USER: PASSWORD}) as srv:
        prepared(project, srv.port, 3)
        use_relay(project, srv.port, security="starttls", username=USER)  # no ca_file: the system store
        proc = project.cli(*send_args(), env=secrets_env(PASSWORD))
        assert proc.returncode == 4
        assert "Traceback" not in proc.stdout + proc.stderr
        line = f"email: cannot trust the TLS certificate of 127.0.0.1:{srv.port} (unable to get local issuer certificate);" \
               " if the relay uses a private CA, set [smtp].ca_file to that CA's certificate (PEM), relative to" \
               " settings.toml; then rerun the same command (sent mail is skipped)"
        assert proc.stdout.splitlines().count(line) == 1, proc.stdout
        assert srv.logins == []  # the password never went to a server we could not trust
        assert srv.received == []
        assert {s for s, _ in ledger(project).values()} == {"planned"}


def test_plain_smtp_to_a_relay_requiring_starttls_leaves_everyone_planned(project, certs):
    # a 530 at MAIL FROM would come back for every recipient: it is the settings' fault, not theirs
    with SmtpServer(starttls=certs.server) as srv:
        prepared(project, srv.port, 4, connections=2)
        proc = project.cli(*send_args(), env=ENV)
        assert proc.returncode == 4
        assert f"email: 127.0.0.1:{srv.port} refused mail before TLS or login (530 Must issue a STARTTLS command first);" \
               " check [smtp].security and [smtp].username" in proc.stdout
        assert {s for s, _ in ledger(project).values()} == {"planned"}  # not failed: a fixed setting sends them
        assert srv.received == []


def test_username_without_password_is_a_config_error_before_anything_is_planned(project, certs):
    with SmtpServer(starttls=certs.server, accounts={USER: PASSWORD}) as srv:
        prepared(project, srv.port, 2)
        use_relay(project, srv.port, security="starttls", username=USER, ca_file=copy_ca(project, certs))
        proc = project.cli(*send_args(), env=ENV)
        assert proc.returncode == 2
        assert proc.stderr.strip() == ("publisher: error: [smtp].username is set but PUBLISHER_SMTP_PASSWORD is not;"
                                       " export PUBLISHER_SMTP_PASSWORD=... and rerun the same command")
        assert ledger(project) == {}
        assert srv.logins == [] and srv.received == []


# -- in process: the smtp module on its own -------------------------------------------------------


def _settings(port: int, **kw) -> SmtpSettings:
    return SmtpSettings(host="127.0.0.1", port=port, timeout=5, **kw)


def test_ca_file_is_relative_to_the_settings_file_and_checked_before_sending(project, certs, tmp_path, monkeypatch):
    use_relay(project, 2525, security="starttls", ca_file=copy_ca(project, certs))
    monkeypatch.chdir(tmp_path)  # not the project folder
    settings = load_settings(project.settings)
    assert settings.smtp.ca_file == str(project.root / "certs" / "relay-ca.pem")
    ctx = tls_context(settings.smtp)
    assert ctx.verify_mode is ssl.CERT_REQUIRED and ctx.check_hostname
    assert password_for(settings.smtp) is None

    use_relay(project, 2525, security="tls", ca_file="certs/missing.pem")
    with pytest.raises(ConfigError, match=r"\[smtp\].ca_file .*certs/missing.pem cannot be read \(No such file"):
        password_for(load_settings(project.settings).smtp)
    key = str(certs.folder / "server.key")
    with pytest.raises(ConfigError, match="holds no PEM certificate"):
        tls_context(_settings(1, security="starttls", ca_file=key))
    assert tls_context(_settings(1, security="none", ca_file=key)) is None  # no TLS, nothing to load


def test_other_ca_self_signed_and_wrong_host_are_named(certs):
    cases = [
        (certs.server, str(certs.other_ca), "(unable to get local issuer certificate); [smtp].ca_file"),
        (certs.self_signed, str(certs.ca), "(self-signed certificate); [smtp].ca_file"),
        (certs.wrong_host, str(certs.ca), "(IP address mismatch, certificate is not valid for '127.0.0.1'.);"
                                          " set [smtp].host to a name"),
    ]
    for server_ctx, ca, expected in cases:
        with SmtpServer(smtps=server_ctx) as srv:
            with pytest.raises(DeliveryError) as err:
                send_one(_settings(srv.port, security="tls", ca_file=ca), "a@example.org", "b@example.org", MESSAGE)
            assert f"email: cannot trust the TLS certificate of 127.0.0.1:{srv.port} {expected}" in str(err.value)
            assert srv.received == []


def test_security_that_does_not_match_the_port_is_named(certs):
    with SmtpServer() as srv:  # plain SMTP, no STARTTLS
        with pytest.raises(DeliveryError, match=r"does not offer STARTTLS .*set \[smtp\].security = 'tls'"):
            send_one(_settings(srv.port, security="starttls"), "a@example.org", "b@example.org", MESSAGE)
        with pytest.raises(DeliveryError, match=r"TLS handshake with 127.0.0.1:\d+ failed \(WRONG_VERSION_NUMBER\)"):
            send_one(_settings(srv.port, security="tls"), "a@example.org", "b@example.org", MESSAGE)
        assert srv.received == []


def test_login_over_plain_smtp_to_a_relay_offering_auth_only_after_tls(certs, monkeypatch):
    monkeypatch.setenv("PUBLISHER_SMTP_PASSWORD", PASSWORD)
    with SmtpServer(starttls=certs.server, accounts={USER: PASSWORD}) as srv:
        with pytest.raises(DeliveryError, match=r"does not offer login \(AUTH\) to \[smtp\].username 'relay-user'"
                                                r" over \[smtp\].security = 'none'"):
            send_one(_settings(srv.port, security="none", username=USER), "a@example.org", "b@example.org", MESSAGE)
        assert srv.logins == []  # the password never crossed the wire in clear
        reply = send_one(_settings(srv.port, security="starttls", username=USER, ca_file=str(certs.ca)),
                         "a@example.org", "b@example.org", MESSAGE)
        assert reply.outcome.value == "sent" and srv.received[0].tls and srv.received[0].login == USER
