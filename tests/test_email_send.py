"""`publisher send` for real: a subprocess sending to aiosmtpd on loopback, replies injected per recipient."""

from __future__ import annotations

import re

import pytest

from support.email_project import ENV, ledger, prepared, send_args, suppressed
from support.smtp_servers import SmtpServer


def test_send_delivers_one_copy_each_and_a_rerun_sends_nothing(project):
    with SmtpServer() as srv:
        addrs = prepared(project, srv.port, 30)
        proc = project.cli(*send_args(), env=ENV)
        assert proc.returncode == 0, proc.stderr
        assert "email endurance/2026-W47: 30 sent, 0 already sent" in proc.stdout
        assert srv.counts() == {a: 1 for a in addrs}
        again = project.cli(*send_args(), env=ENV)
        assert again.returncode == 0, again.stderr
        assert "0 sent, 30 already sent" in again.stdout
        assert len(srv.received) == 30
        rows = ledger(project)
        assert {s for s, _ in rows.values()} == {"sent"}
        msg = srv.received[0].message()
        assert msg["Message-ID"].endswith("@endurance-info.com>")
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_subscriber_of_several_series_gets_one_email_and_suppressed_gets_none(project):
    with SmtpServer() as srv:
        prepared(project, srv.port, 2)
        csv = project.root / "more.csv"
        csv.write_text("email,name,series\nmulti@example.org,Multi,wec;elms;le-mans\nlist@example.org,L,endurance\n"
                       "gone@example.org,Gone,wec\nother@example.org,Other,gt\n", encoding="utf-8")
        project.cli("subscribers", "import", str(csv), check=True)
        project.cli("subscribers", "remove", "gone@example.org", check=True)
        proc = project.cli(*send_args(), env=ENV)
        assert proc.returncode == 0, proc.stderr
        counts = srv.counts()
        assert counts["multi@example.org"] == 1
        assert counts["list@example.org"] == 1  # on the campaign's own list
        assert "gone@example.org" not in counts
        assert "other@example.org" not in counts  # GT is another campaign
        assert len(counts) == 4


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one-command-at-a-time"])
def test_faults_retry_fail_suppress_and_unknown(project, pipelining):
    faults = {
        "lecteur00000@example.org": ["rcpt 450 4.2.1 Mailbox busy", "ok"],
        "lecteur00001@example.org": ["data 451 4.3.0 Local error", "ok"],
        "lecteur00002@example.org": ["rcpt 550 5.1.1 No such user"],
        "lecteur00003@example.org": ["rcpt 552 5.2.2 Mailbox full"],
        "lecteur00004@example.org": ["drop-rcpt", "ok"],
        "lecteur00005@example.org": ["drop-data"],
        "lecteur00006@example.org": ["rcpt 421 4.7.0 Too many connections, try again in 1 seconds", "ok"],
        "lecteur00007@example.org": ["rcpt 553 5.1.3 Bad address syntax"],
    }
    with SmtpServer(faults, pipelining=pipelining) as srv:
        addrs = prepared(project, srv.port, 20, retry_backoff=0.05, connections=3)
        proc = project.cli(*send_args(), env=ENV)
        assert proc.returncode == 4, proc.stdout + proc.stderr  # failed and unknown rows are trouble
        rows = ledger(project)
        counts = srv.counts()
        for a in addrs[8:]:
            assert rows[a][0] == "sent" and counts[a] == 1
        for a in (addrs[0], addrs[1], addrs[4], addrs[6]):  # retried later, then delivered once
            assert rows[a][0] == "sent", rows[a]
            assert counts[a] == 1
        assert rows[addrs[2]] == ("failed", "550 RCPT TO: 5.1.1 No such user")
        assert rows[addrs[3]][0] == "failed" and rows[addrs[7]][0] == "failed"
        assert rows[addrs[5]][0] == "unknown" and counts[addrs[5]] == 0
        assert "after the message was sent" in rows[addrs[5]][1]
        sup = suppressed(project)
        assert sup.get(addrs[2]) == "hard-bounce" and sup.get(addrs[7]) == "hard-bounce"
        assert addrs[3] not in sup  # 552 is a failure, not a hard bounce
        assert re.search(r"1 unknown \(maybe delivered\): lecteur00005@example.org", proc.stdout)
        assert "--resend-unknown" in proc.stdout

        # the unknown row is left alone by a plain rerun, resent only when asked
        project.cli(*send_args(), env=ENV)
        assert ledger(project)[addrs[5]][0] == "unknown"
        srv.handler.faults.pop(addrs[5])
        proc = project.cli(*send_args("--resend-unknown"), env=ENV)
        assert ledger(project)[addrs[5]][0] == "sent"
        assert srv.count(addrs[5]) == 1
        assert srv.count(addrs[2]) == 0  # suppressed, never retried


def test_unreachable_server_leaves_everyone_pending(project):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    prepared(project, port, 5, retry_backoff=0.05, retry_wait=0.5, max_attempts=3)
    proc = project.cli(*send_args(), env=ENV)
    assert proc.returncode == 4
    states = {s for s, _ in ledger(project).values()}
    assert states <= {"planned", "failed"}
    assert "cannot connect to 127.0.0.1" in next(iter(ledger(project).values()))[1]


def test_missing_secret_is_one_line_config_error(project):
    with SmtpServer() as srv:
        prepared(project, srv.port, 1)
        proc = project.cli(*send_args())
        assert proc.returncode == 2
        assert "PUBLISHER_UNSUBSCRIBE_SECRET is not set" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert srv.received == []


def test_send_to_seed_addresses_creates_no_rows(project):
    with SmtpServer() as srv:
        prepared(project, srv.port, 3)
        proc = project.cli(*send_args("--to", "Seed@Example.COM"), env=ENV)
        assert proc.returncode == 0, proc.stderr
        assert "to seed@example.com: sent" in proc.stdout
        assert srv.counts() == {"seed@example.com": 1}
        assert srv.received[0].message()["Subject"].startswith("[TEST] Endurance Hebdo")
        assert ledger(project) == {}


def test_stop_finishes_messages_in_flight_and_leaves_the_rest_planned(project, monkeypatch):
    import threading
    import time
    from datetime import datetime

    from publisher.app import Context
    from publisher.config import load_campaigns
    from publisher.pipeline import send
    from support.email_project import EDITION, NOW, SECRET

    monkeypatch.setenv("PUBLISHER_UNSUBSCRIBE_SECRET", SECRET)
    with SmtpServer(delay=0.01) as srv:
        prepared(project, srv.port, 150, connections=2)
        ctx = Context.open(project.settings, now=datetime.fromisoformat(NOW))
        campaign = load_campaigns(ctx.settings, ["endurance"])[0]
        reports = []
        worker = threading.Thread(target=lambda: reports.extend(send(ctx, [campaign], EDITION)))
        worker.start()
        end = time.monotonic() + 30
        while len(srv.received) < 20 and time.monotonic() < end:
            time.sleep(0.005)
        ctx.stop.set()  # what SIGTERM does
        worker.join(30)
        ctx.close()
        rows = ledger(project)
        states = [s for s, _ in rows.values()]
        assert set(states) == {"sent", "planned"}  # nothing unknown, nothing stuck in sending
        assert states.count("sent") == len(srv.received) and all(c == 1 for c in srv.counts().values())
        (report,) = reports
        assert report.pending == states.count("planned") > 0
        assert any("stopped" in m for m in report.messages)
