"""The sending engine on a relay's bad day: 4xx bursts, refused and capped sessions, a sender the relay
refuses, a clock stepped ahead, every time through a real `publisher send` process and a real server.

The promise under test: an attempt counts only when the relay answered for that recipient, so a relay
refusing sessions or some RCPTs never makes a subscriber end `failed` without having been seen; and
nobody gets two copies, whatever the clocks of two senders say.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from test_send_kill import _popen

from support.chaos_smtp import ChaosSmtp
from support.email_project import ENV, NOW, attempts, ledger, prepared, send_args, suppressed
from support.smtp_servers import SmtpServer


def test_a_relay_refusing_sessions_and_rcpts_in_bursts_burns_no_attempt_and_delivers_everyone_once(project):
    # ~10% of RCPTs refused with 4xx; two sessions in every five refused with a 421 greeting; every
    # session closed with 421 after 7 messages: the pattern that used to fail hundreds of subscribers
    with ChaosSmtp(rcpt_4xx=0.10, busy_every=5, busy_burst=2, close_after=7, seed=8) as srv:
        addrs = prepared(project, srv.port, 300, connections=4, retry_backoff=0.05, max_attempts=8)
        proc = project.cli(*send_args(), env=ENV, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "email endurance/2026-W47: 300 sent, 0 already sent" in proc.stdout
        assert srv.counts() == {a: 1 for a in addrs}
        assert srv.refused > 10 and sum(srv.answers.values()) > 300  # the chaos really happened
        rows, tries = ledger(project), attempts(project)
        assert {s for s, _ in rows.values()} == {"sent"}
        # each attempt in the ledger is an RCPT the relay answered: none was burnt by a paused connection
        assert tries == {a: srv.answers[a] for a in addrs}


def test_attempts_run_out_only_where_the_relay_answered_and_a_rerun_of_failed_rows_exits_4(project):
    with ChaosSmtp(rcpt_4xx=0.5, busy_every=3, busy_burst=1, close_after=5, seed=3) as srv:
        addrs = prepared(project, srv.port, 80, connections=3, retry_backoff=0.02, max_attempts=2)
        proc = project.cli(*send_args(), env=ENV, timeout=300)
        assert proc.returncode == 4, proc.stdout + proc.stderr
        rows, tries = ledger(project), attempts(project)
        failed = [a for a in addrs if rows[a][0] == "failed"]
        sent = [a for a in addrs if rows[a][0] == "sent"]
        assert failed and sent and len(failed) + len(sent) == len(addrs)
        for a in failed:  # refused twice by the relay itself, never by our own pause
            assert srv.answers[a] == tries[a] == 2, (a, srv.answers[a], tries[a])
            assert rows[a][1].startswith("gave up after 2 attempts: 450 RCPT TO: 4.2.0 chaos try later")
        assert all(srv.counts()[a] == 1 for a in sent)
        assert suppressed(project) == {}  # a 4xx is never a bounce

        received = len(srv.received)
        again = project.cli(*send_args(), env=ENV)
        assert again.returncode == 4, again.stdout + again.stderr  # only failed rows left: still trouble
        assert f"0 sent, {len(sent)} already sent, {len(failed)} failed" in again.stdout
        assert len(srv.received) == received


def test_the_relay_refusing_our_sender_stops_the_send_and_suppresses_nobody(project):
    with SmtpServer() as srv:
        srv.handler.mail_reply = "553 5.7.1 <newsletter@endurance-info.com>: Sender address rejected: not owned by user"
        addrs = prepared(project, srv.port, 12, connections=3)
        proc = project.cli(*send_args(), env=ENV)
        assert proc.returncode == 4, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr
        assert "refused the sender address newsletter@endurance-info.com (553" in proc.stdout
        assert "check [email].from" in proc.stdout
        assert srv.received == []
        assert suppressed(project) == {}  # a refusal of *our* address is nobody's bounce
        assert {s for s, _ in ledger(project).values()} == {"planned"}
        assert set(attempts(project).values()) == {0}

        srv.handler.mail_reply = None  # the user fixes [email].from (or the relay's account): the rerun delivers
        again = project.cli(*send_args(), env=ENV)
        assert again.returncode == 0, again.stdout + again.stderr
        assert srv.counts() == {a: 1 for a in addrs}


def test_a_second_sender_with_its_clock_30_minutes_ahead_cannot_take_the_lease(project):
    with SmtpServer(delay=0.05) as srv:
        addrs = prepared(project, srv.port, 60, connections=1)
        first = _popen(project, *send_args())
        end = time.monotonic() + 30
        while not srv.received and time.monotonic() < end:
            time.sleep(0.01)
        ahead = (datetime.fromisoformat(NOW) + timedelta(minutes=30)).isoformat()
        for now in (ahead, (datetime.fromisoformat(NOW) + timedelta(days=2)).isoformat()):
            second = project.cli("--now", now, "send", "endurance", "--edition", "2026-W47", env=ENV)
            assert second.returncode == 5, second.stdout + second.stderr
            assert f"send:endurance/2026-W47 is held by pid {first.pid}" in second.stderr
            assert "Traceback" not in second.stderr
        out, err = first.communicate(timeout=120)
        assert first.returncode == 0, out + err
        assert srv.counts() == {a: 1 for a in addrs}  # nobody got a second copy


def test_a_relay_that_stops_answering_mid_message_costs_one_unknown_and_never_hangs_the_send(project):
    stuck = "lecteur00007@example.org"
    with ChaosSmtp(stall=(stuck,), seed=1) as srv:
        addrs = prepared(project, srv.port, 40, connections=2, timeout=1)
        proc = project.cli(*send_args(), env=ENV, timeout=120)
        assert proc.returncode == 4, proc.stdout + proc.stderr  # the unknown one is reported
        rows = ledger(project)
        assert rows[stuck][0] == "unknown"
        assert "no reply within [smtp].timeout = 1s" in rows[stuck][1] and "outcome unknown" in rows[stuck][1]
        assert "lecteur00007@example.org" in proc.stdout and "--resend-unknown" in proc.stdout
        others = [a for a in addrs if a != stuck]
        assert all(rows[a][0] == "sent" for a in others)
        assert srv.counts() == {a: 1 for a in others}
        assert "Traceback" not in proc.stderr


def test_one_command_at_a_time_to_a_relay_without_pipelining(project):
    with ChaosSmtp(rcpt_4xx=0.2, close_after=4, pipelining=False, seed=5) as srv:
        addrs = prepared(project, srv.port, 60, connections=3, retry_backoff=0.02)
        proc = project.cli(*send_args(), env=ENV, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert srv.counts() == {a: 1 for a in addrs}
        assert attempts(project) == {a: srv.answers[a] for a in addrs}
