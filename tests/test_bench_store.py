"""The store benchmarks run end to end at a tiny size, so they cannot rot (their figures are never asserted).

bench/bench_store_backends.py (ledger cost on SQLite and PostgreSQL) and bench/bench_senders.py (one and
two `publisher send` on one edition) each start their own PostgreSQL server on 127.0.0.1.
"""

from __future__ import annotations

import smtplib
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _bench(script: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=600,
                          cwd=BENCH.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.slow
def test_the_backends_bench_times_each_ledger_step_on_both_stores():
    out = _bench("bench_store_backends.py", "--sizes", "300", "--rounds", "2", "--counts-calls", "3",
                 "--pg-durability", "none")
    assert "fsync=off, synchronous_commit=off" in out  # it says which durability it measured
    for step in ("plan", "claim", "finish", "total", "counts/call"):
        assert any(line.split()[:2] == ["300", step] for line in out.splitlines()), (step, out)


@pytest.mark.slow
def test_the_senders_bench_sends_each_address_exactly_once_in_every_configuration():
    out = _bench("bench_senders.py", "--counts", "40", "--delay-ms", "0,3", "--rounds", "1", "--connections", "2",
                 "--pg-durability", "none")
    rows = [line.split() for line in out.splitlines() if line.split()[:1] == ["40"]]
    assert [r[1] for r in rows] == ["0ms", "3ms"], out
    assert "every round: each address got exactly one message (the sink's counts)" in out
    head = next(line for line in out.splitlines() if line.split()[:2] == ["list", "delay"])
    assert "1 sender" in head and "2 senders" in head and "2 senders ÷ 1" in head, out


def test_the_senders_sink_counts_each_address_also_when_it_delays_its_answers():
    sys.path.insert(0, str(BENCH))
    try:
        from bench_senders import Sink
    finally:
        sys.path.remove(str(BENCH))
    sink = Sink(delay_ms=3.0)
    try:
        with smtplib.SMTP("127.0.0.1", sink.port) as smtp:
            for to in ("a@example.org", "b@example.org", "a@example.org"):
                assert smtp.sendmail("news@example.org", [to], b"Subject: x\r\n\r\nbody\r\n") == {}
            smtp.sendmail("news@example.org", ["c@example.org", "d@example.org"], b"Subject: y\r\n\r\n.\r\n")
        counts, window = sink.take()
        assert counts == {"a@example.org": 2, "b@example.org": 1, "c@example.org": 1, "d@example.org": 1}
        assert len(window) == 2 and window[0] <= window[1]
        assert sink.take() == ({}, [])  # taking resets the counts for the next round
    finally:
        sink.stop()
