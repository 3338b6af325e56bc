"""Several `publisher serve` processes on one store (behind a load balancer, or on several machines sharing a
PostgreSQL store): a reader's sign-up, confirmation and unsubscribe may each reach a different one, and a
process starting never settles the mail another one has in flight. Run on both stores."""

from __future__ import annotations

import pytest

from support.email_project import _query, live_without_subscribers
from support.smtp_servers import SmtpServer
from support.web import csrf, link_in, local, request, serving, wait_for

READER = "claire.martin@example.org"


@pytest.fixture
def project(any_project):
    return any_project


def _sign_up(base: str, address: str) -> int:
    page = request(f"{base}/subscribe/endurance")[1]
    form = {"csrf": csrf(page), "form": "endurance", "email": address, "name": "", "website": "", "consent": "yes",
            "list": "endurance"}
    return request(f"{base}/subscribe", "&".join(f"{k}={v}" for k, v in form.items()).encode())[0]


def _mails(srv: SmtpServer, subject: str) -> list:
    return [r.message() for r in srv.received if r.rcpt == READER and subject in str(r.message()["Subject"])]


def test_a_reader_signs_up_on_one_process_confirms_on_another_and_unsubscribes_on_the_first(project):
    with SmtpServer() as srv:
        live_without_subscribers(project, srv.port)
        with serving(project) as (_, one), serving(project) as (_, two):
            base_one, base_two = one.rsplit("/", 1)[0], two.rsplit("/", 1)[0]
            assert base_one != base_two
            assert _sign_up(base_one, READER) == 200
            confirm = wait_for(lambda: _mails(srv, "Confirmez"), what="the confirmation mail")[0]
            status, body = request(local(link_in(confirm.get_content(), "/newsletter/confirm"), base_two), b"")
            assert status == 200 and "Abonnement confirmé".encode() in body
            assert _query(project, "SELECT email FROM subscribers") == [(READER,)]
            welcome = wait_for(lambda: _mails(srv, "Bienvenue"), what="the welcome mail")[0]
            prefs = local(link_in(welcome.get_content(), "/newsletter/unsubscribe/preferences"), base_one)
            assert request(prefs)[0] == 200
        states = _query(project, "SELECT state FROM deliveries WHERE target = ?", (READER,))
        assert [s for (s,) in states] == ["sent", "sent"], "confirmation and welcome, once each, through the ledger"


def test_a_process_starting_leaves_the_mail_another_has_in_flight_alone(project):
    with SmtpServer(delay=3) as srv:  # the confirmation stays on the wire for 3 s
        live_without_subscribers(project, srv.port)
        with serving(project) as (_, one):
            assert _sign_up(one.rsplit("/", 1)[0], READER) == 200
            wait_for(lambda: _query(project, "SELECT state FROM deliveries WHERE target = ?", (READER,)) == [("sending",)],
                     what="the confirmation on the wire")
            with serving(project) as _:  # starts while the first has it in flight: settles only dead processes' mail
                assert _query(project, "SELECT state FROM deliveries WHERE target = ?", (READER,)) == [("sending",)]
                wait_for(lambda: _query(project, "SELECT state FROM deliveries WHERE target = ?", (READER,)) == [("sent",)],
                         what="the confirmation recorded as sent by the first process")
    assert len(_mails(srv, "Confirmez")) == 1


@pytest.mark.parametrize("page", ["archive", "sign-up"])
def test_a_worker_cut_off_from_postgresql_stops_with_exit_7(pg_project, postgres_server, page):
    """Its session (and its sender lease) are gone: it stops, for its supervisor to start a new one. A page
    that reads the store answers 503; a sign-up, whose answer goes before the store is written, answers as
    always and the worker stops when the write fails."""
    import psycopg

    with SmtpServer() as srv:
        live_without_subscribers(pg_project, srv.port)
        with serving(pg_project) as (proc, unsubscribe):
            base = unsubscribe.rsplit("/", 1)[0]
            assert request(f"{base}/archive/")[0] == 200  # the archive reads the store
            form = request(f"{base}/subscribe/endurance")[1]
            with psycopg.connect(postgres_server.url, autocommit=True) as admin:
                cut = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                                    (f"publisher pid {proc.pid}",)).fetchall()
            assert cut and all(ok for (ok,) in cut)
            if page == "archive":
                status, body = request(f"{base}/archive/")
                assert status == 503 and "Réessayez dans quelques instants".encode() in body
            else:
                fields = {"csrf": csrf(form), "form": "endurance", "email": READER, "name": "", "website": "",
                          "consent": "yes", "list": "endurance"}
                status, _ = request(f"{base}/subscribe", "&".join(f"{k}={v}" for k, v in fields.items()).encode())
                assert status == 200
            assert proc.wait(timeout=30) == 7
            err = proc.stderr.read()
            assert "the connection to PostgreSQL was lost" in err and "Traceback" not in err
            assert [ln for ln in err.splitlines() if ln.startswith("publisher: error: ")], err
