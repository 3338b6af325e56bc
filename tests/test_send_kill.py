"""kill -9 at random moments of a real `publisher send`, then restart: nobody missed, nobody doubled
except the messages that were on the wire at a kill, which are `unknown`, listed, and resent only on request.
Also: two sends of one edition at once, one proceeds and the other names the holder."""

from __future__ import annotations

import os
import random
import re
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
    with SmtpServer(delay=0.02) as srv:  # 200 messages, 4 s: the second command starts well before the end
        prepared(project, srv.port, 200, connections=1)
        first = _popen(project, *send_args())
        end = time.monotonic() + 30
        while not srv.received and time.monotonic() < end:
            time.sleep(0.01)
        second = project.cli(*send_args(), env=ENV)
        assert second.returncode == 5, second.stdout + second.stderr
        assert f"send:endurance/2026-W47 is held by pid {first.pid}" in second.stderr
        out, err = first.communicate(timeout=60)
        assert first.returncode == 0, err
        assert len(srv.received) == 200
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


# -- several senders on one edition (--join): one machine here, or several on one PostgreSQL store ---


def _sent_by(out: str) -> int:
    m = re.search(r"^email endurance/2026-W47: (\d+) sent", out, re.M)
    assert m, out
    return int(m.group(1))


def _wait_for(srv: SmtpServer, n: int, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while len(srv.received) < n and time.monotonic() < end:
        time.sleep(0.005)


def _second_machine(project, name: str):
    """The same settings with a state folder of its own: another machine sharing the store."""
    other = project.root / f"{name}.toml"
    text = project.settings.read_text(encoding="utf-8")
    other.write_text(re.sub(r"(?m)^(store = .*)$", rf'\1\nstate_dir = "{name}"', text, count=1), encoding="utf-8")
    return other


def test_joined_senders_share_an_edition_and_nobody_gets_two_copies(project):
    with SmtpServer(delay=0.004) as srv:
        addrs = prepared(project, srv.port, 900, connections=2)
        first = _popen(project, *send_args("--join"))
        _wait_for(srv, 30)  # the first is sending: the second joins mid-send, its start-up spares the first's rows
        second = _popen(project, "--settings", str(_second_machine(project, "machine-b")), *send_args("--join"))
        out1, err1 = first.communicate(timeout=120)
        out2, err2 = second.communicate(timeout=120)
        assert first.returncode == 0, out1 + err1
        assert second.returncode == 0, out2 + err2
        assert srv.counts() == {a: 1 for a in addrs}, "every reader exactly one copy"
        assert _sent_by(out1) > 0 and _sent_by(out2) > 0, "both senders took recipients"
        assert _sent_by(out1) + _sent_by(out2) == len(addrs)
        assert {s for s, _ in ledger(project).values()} == {"sent"}


def test_a_killed_joined_sender_leaves_unknown_rows_and_the_other_carries_on(project):
    with SmtpServer(delay=0.004) as srv:
        addrs = prepared(project, srv.port, 900, connections=CONNECTIONS)
        steady = _popen(project, *send_args("--join"))
        doomed = _popen(project, "--settings", str(_second_machine(project, "machine-b")), *send_args("--join"))
        _kill_when(doomed, srv, 150)  # SIGKILL mid-send, while the other sender goes on
        out, err = steady.communicate(timeout=120)
        rows = ledger(project)
        left = {a for a, (s, _) in rows.items() if s == "sending"}
        assert {s for a, (s, _) in rows.items() if a not in left} == {"sent"}, "the survivor sent all the rest"
        # it says what the dead sender left, where it ran, and how to settle it
        assert steady.returncode == (4 if left else 0), out + err
        if left:
            assert (f"{len(left)} message(s) were claimed by a sender that stopped (pid {doomed.pid} on" in out
                    and "on its machine to settle them from its wire journal" in out), out
        # a later run (on the first machine: the dead sender's wire journal is on machine-b) settles them
        final = project.cli(*send_args(), env=ENV)
        assert final.returncode in (0, 4), final.stdout + final.stderr
        rows = ledger(project)
        unknown = {a for a, (s, _) in rows.items() if s == "unknown"}
        assert {s for s, _ in rows.values()} <= {"sent", "unknown"}
        assert unknown <= left
        if project.store_url:
            # claimed and not yet on the wire (< 2 claims of 64), plus answered and not yet recorded (< 64)
            assert len(unknown) < 3 * 64, "a sender on PostgreSQL holds less than 3 x SHARED_BATCH rows"
        assert all("not on this machine" in rows[a][1] for a in unknown)
        counts = srv.counts()
        assert all(counts.get(a, 0) == 1 for a in addrs if rows[a][0] == "sent"), "nobody got two copies"
        assert all(counts.get(a, 0) <= 1 for a in unknown)
        if unknown:  # reported, with the command that resends them
            assert f"{len(unknown)} unknown" in final.stdout and "--resend-unknown" in final.stdout


def test_a_killed_joined_sender_is_settled_from_its_journal_on_its_own_machine(project):
    with SmtpServer(delay=0.004) as srv:
        addrs = prepared(project, srv.port, 600, connections=CONNECTIONS)
        doomed = _popen(project, *send_args("--join"))
        _kill_when(doomed, srv, 100)
        final = project.cli(*send_args("--join"), env=ENV)  # same machine: its journal says what left
        assert final.returncode in (0, 4), final.stdout + final.stderr
        rows = ledger(project)
        unknown = [a for a, (s, _) in rows.items() if s == "unknown"]
        assert len(unknown) <= CONNECTIONS, "only what was on the wire at the kill"
        assert {s for s, _ in rows.values()} <= {"sent", "unknown"}
        assert all(srv.count(a) == 1 for a in addrs if rows[a][0] == "sent")
        assert not list((project.root / "var" / "journal").glob("*.log")), "settled journals are removed"


@pytest.mark.parametrize("running, second, says", [
    ("--join", "", "a sender started with --join shares the edition with other --join senders"),
    ("", "--join", "it was started without --join: wait for it to finish"),
])
def test_a_sender_without_join_and_joined_senders_exclude_each_other(project, running, second, says):
    with SmtpServer(delay=0.02) as srv:
        addrs = prepared(project, srv.port, 60, connections=1)
        first = _popen(project, *send_args(*filter(None, [running])))
        _wait_for(srv, 1, 30)
        refused = project.cli(*send_args(*filter(None, [second])), env=ENV)
        assert refused.returncode == 5, refused.stdout + refused.stderr
        assert f"send:endurance/2026-W47 is held by pid {first.pid}" in refused.stderr
        assert says in refused.stderr
        assert "Traceback" not in refused.stderr
        out, err = first.communicate(timeout=60)
        assert first.returncode == 0, out + err
        assert srv.counts() == {a: 1 for a in addrs}


def test_a_sender_cut_off_from_postgresql_stops_in_one_line_and_the_rerun_settles_everything(pg_project, postgres_server):
    import psycopg

    project = pg_project
    with SmtpServer(delay=0.01) as srv:
        addrs = prepared(project, srv.port, 400, connections=2)
        proc = _popen(project, *send_args())
        _wait_for(srv, 60)
        with psycopg.connect(postgres_server.url, autocommit=True) as admin:  # the server drops its session
            cut = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                                (f"publisher pid {proc.pid}",)).fetchall()
        assert cut == [(True,)]
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 7, out + err
        assert "Traceback" not in err
        lines = [ln for ln in err.splitlines() if ln.startswith("publisher: error: ")]
        assert len(lines) == 1 and "the connection to PostgreSQL was lost" in lines[0], err
        assert "rerun the same command" in err
        assert project.env["PUBLISHER_STORE_PASSWORD"] not in out + err
        again = project.cli(*send_args(), env=ENV)  # its journal settles what it had on the wire
        assert again.returncode in (0, 4), again.stdout + again.stderr
        rows = ledger(project)
        unknown = [a for a, (s, _) in rows.items() if s == "unknown"]
        assert {s for s, _ in rows.values()} <= {"sent", "unknown"} and len(unknown) <= 2
        assert all(srv.count(a) == 1 for a in addrs if rows[a][0] == "sent"), "nobody got two copies"
