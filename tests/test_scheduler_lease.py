"""Only one scheduler per store: real processes race for the lease (an OS lock); a killed holder is taken over
at once, and no clock, however far ahead, takes it from a live one."""

from __future__ import annotations

import socket
from datetime import datetime, timedelta, timezone

import pytest

from support.email_project import write
from support.user_errors import edit
from support.scheduler_process import Proc, lease_holder, query, wait_for


@pytest.fixture
def project(any_project):
    """Each test on both stores: on PostgreSQL the lease is an advisory lock of the scheduler's session."""
    return any_project


def test_two_schedulers_racing_one_gets_the_lease_the_other_says_who_and_exits_5(project):
    a = Proc(project, "schedule", name="a")
    b = Proc(project, "schedule", name="b")
    try:
        loser = wait_for(lambda: next((p for p in (a, b) if p.poll() is not None), None), what="one to exit",
                         procs=(a, b))
        winner = b if loser is a else a
        assert loser.wait() == 5, loser.stderr
        assert "another scheduler is running" in loser.stderr
        assert f"pid {winner.pid} on {socket.gethostname()}" in loser.stderr
        assert "Traceback" not in loser.stderr
        assert winner.poll() is None
        assert lease_holder(project) == winner.pid
        # the winner stops cleanly on SIGTERM and gives the lease back
        assert winner.terminate() == 0, winner.stderr
        assert "scheduler stopped" in winner.stderr
        assert lease_holder(project) is None
    finally:
        a.kill()
        b.kill()


def test_a_lease_left_by_a_killed_scheduler_is_taken_over(project):
    a = Proc(project, "schedule", name="a")
    try:
        wait_for(lambda: lease_holder(project) == a.pid, what="the lease", procs=(a,))
        # while it lives, a one-shot run is refused with the holder named
        busy = project.cli("run")
        assert busy.returncode == 5 and f"pid {a.pid}" in busy.stderr
    finally:
        a.kill()  # SIGKILL: no clean-up, the lease row stays behind
    assert lease_holder(project) == a.pid
    b = Proc(project, "schedule", name="b")
    try:
        wait_for(lambda: lease_holder(project) == b.pid, what="the takeover", procs=(b,))
        assert b.poll() is None
        assert b.terminate() == 0
    finally:
        b.kill()


def test_a_clock_ahead_never_takes_a_live_schedulers_lease_and_a_stale_row_blocks_nobody(project):
    a = Proc(project, "schedule", name="a")
    try:
        wait_for(lambda: lease_holder(project) == a.pid, what="the lease", procs=(a,))
        # a catch-up run 30 minutes, a day or a year ahead: the holder lives, so the lease is its own
        now = datetime.now(timezone.utc)
        for ahead in (timedelta(minutes=30), timedelta(days=1), timedelta(days=365)):
            proc = project.cli("--now", (now + ahead).isoformat(), "run")
            assert proc.returncode == 5, proc.stdout + proc.stderr
            assert "another scheduler is running" in proc.stderr and f"pid {a.pid}" in proc.stderr
            assert "Traceback" not in proc.stderr
        assert a.poll() is None and lease_holder(project) == a.pid
        assert a.terminate() == 0, a.stderr
    finally:
        a.kill()

    # a row naming a holder that holds nothing (another host's leftovers, a restored backup) is no lease
    write(project, "INSERT INTO leases (name, holder, pid, host, acquired_at, expires_at)"
                   " VALUES ('scheduler', 'pid 4242 on elsewhere', 4242, 'elsewhere', ?, ?) ON CONFLICT(name) DO UPDATE"
                   " SET holder=excluded.holder, pid=excluded.pid, host=excluded.host, acquired_at=excluded.acquired_at,"
                   " expires_at=excluded.expires_at", (now.isoformat(), (now + timedelta(hours=1)).isoformat()))
    status = project.cli("status", check=True)
    assert "scheduler: not running" in status.stdout
    proc = project.cli("run")
    assert proc.returncode != 5, proc.stderr
    assert query(project, "SELECT count(*) FROM leases WHERE name='scheduler'") == [(0,)]  # released after the run


def test_a_scheduler_cut_off_from_postgresql_exits_7_and_its_lease_goes_with_its_session(pg_project, postgres_server):
    """systemd restarts it (exit 7 is not in RestartPreventExitStatus); meanwhile a standby may take over."""
    import psycopg

    project = pg_project
    edit(project.settings, r'^tick = .*$', 'tick = "1s"')
    a = Proc(project, "schedule", name="a")
    try:
        wait_for(lambda: lease_holder(project) == a.pid, what="the lease", procs=(a,))
        with psycopg.connect(postgres_server.url, autocommit=True) as admin:
            cut = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                                (f"publisher pid {a.pid}",)).fetchall()
        assert cut and all(ok for (ok,) in cut)
        assert a.wait() == 7, a.stderr
        errors = [ln for ln in a.stderr.splitlines() if ln.startswith("publisher: error: ")]
        assert len(errors) == 1 and "the connection to PostgreSQL was lost" in errors[0], a.stderr
        assert "Traceback" not in a.stderr
        b = Proc(project, "schedule", name="b")  # the next one (systemd's restart, or the standby) takes the lease
        try:
            wait_for(lambda: lease_holder(project) == b.pid, what="the lease taken over", procs=(b,))
        finally:
            assert b.terminate() == 0, b.stderr
    finally:
        a.kill()
