"""kill -9 at random moments of a real `publisher send`, then restart: nobody missed, nobody doubled
except the messages that were on the wire at a kill, which are `unknown`, listed, and resent only on request.
Also: two sends of one edition at once, one proceeds and the other names the holder."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time

import pytest

from support.email_project import ENV, ledger, prepared, send_args
from support.smtp_servers import SmtpServer

CONNECTIONS = 3


@pytest.fixture
def project(any_project):
    """Every test here runs on both stores: SQLite, then PostgreSQL."""
    return any_project


def _popen(project, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")} | project.env | ENV
    return subprocess.Popen([sys.executable, "-m", "publisher", "--settings", str(project.settings), *args],
                            cwd=project.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_when(proc: subprocess.Popen, srv: SmtpServer, received_at_least: int, timeout: float = 30) -> None:
    """SIGKILL `proc` once the server has received that many messages (or it exits by itself)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None and len(srv.received) < received_at_least:
        time.sleep(0.001)
    proc.kill()
    proc.communicate()


def _kill_restart(project, kills: int, n: int, seed: int) -> None:
    rng = random.Random(seed)
    faults = {f"lecteur{i:05d}@example.org": ["rcpt 451 4.3.0 Try later", "ok"] for i in rng.sample(range(n), 3)}
    with SmtpServer(faults) as srv:
        addrs = prepared(project, srv.port, n, connections=CONNECTIONS, retry_backoff=0.05)
        for k in range(kills):
            proc = _popen(project, *send_args())
            if k % 3 == 2:  # sometimes at a random time, wherever it is (start-up, planning, sending)
                time.sleep(rng.uniform(0.2, 2.5))
                proc.kill()
                proc.communicate()
            else:  # mostly mid-send: after a random number of messages
                _kill_when(proc, srv, len(srv.received) + rng.randint(1, max(2, n // (kills + 1))))
        final = project.cli(*send_args(), env=ENV)
        assert final.returncode in (0, 4), final.stderr
        rows = ledger(project)
        counts = srv.counts()
        assert set(rows) == set(addrs), "every subscriber has a ledger row"
        unknown = [a for a, (state, _) in rows.items() if state == "unknown"]
        assert {state for state, _ in rows.values()} <= {"sent", "unknown"}, "nothing left planned or failed"
        assert len(unknown) <= kills * CONNECTIONS, "at most one message on the wire per connection per kill"
        for a in addrs:
            if rows[a][0] == "sent":
                assert counts[a] == 1, f"{a} sent but received {counts[a]} times"
            else:
                assert counts[a] <= 1
        for a in unknown:  # listed for the user
            assert a in final.stdout
        # the user's go-ahead: unknown rows are resent; only those can be doubled
        again = project.cli(*send_args("--resend-unknown"), env=ENV)
        assert again.returncode == 0, again.stdout + again.stderr
        counts = srv.counts()
        assert {state for state, _ in ledger(project).values()} == {"sent"}
        for a in addrs:
            assert 1 <= counts[a] <= (2 if a in unknown else 1)


def test_kill_restart_quick(project):
    _kill_restart(project, kills=2, n=120, seed=1)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_kill_restart_many(project, seed):
    _kill_restart(project, kills=8, n=400, seed=seed)


def test_two_sends_at_once_one_waits_out(project):
    with SmtpServer(delay=0.02) as srv:
        prepared(project, srv.port, 60, connections=1)
        first = _popen(project, *send_args())
        end = time.monotonic() + 30
        while not srv.received and time.monotonic() < end:
            time.sleep(0.01)
        second = project.cli(*send_args(), env=ENV)
        assert second.returncode == 5, second.stdout + second.stderr
        assert f"send:endurance/2026-W47 is held by pid {first.pid}" in second.stderr
        out, err = first.communicate(timeout=60)
        assert first.returncode == 0, err
        assert len(srv.received) == 60
        assert all(c == 1 for c in srv.counts().values())


def test_sigterm_finishes_in_flight_and_the_rerun_completes(project):
    with SmtpServer(delay=0.02) as srv:
        addrs = prepared(project, srv.port, 80, connections=2)
        proc = _popen(project, *send_args())
        end = time.monotonic() + 30
        while len(srv.received) < 10 and time.monotonic() < end and proc.poll() is None:
            time.sleep(0.005)
        proc.terminate()  # SIGTERM: finish what is on the wire, leave the rest planned
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 4, out + err  # pending work is reported, with the command to rerun
        assert "rerun 'publisher send endurance'" in out
        rows = ledger(project)
        states = {s for s, _ in rows.values()}
        assert "unknown" not in states and "sending" not in states, "a clean stop leaves no unknown rows"
        assert "planned" in states, "stopped before the end"
        assert all(srv.count(a) == (1 if rows[a][0] == "sent" else 0) for a in addrs)
        again = project.cli(*send_args(), env=ENV)
        assert again.returncode == 0, again.stdout + again.stderr
        assert {s for s, _ in ledger(project).values()} == {"sent"}
        assert all(srv.count(a) == 1 for a in addrs)
