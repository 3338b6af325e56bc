"""`publisher subscribers import` streams its file: its peak memory does not grow with the file.

A memory bound, not a speed assertion (bench/bench_import.py measures both at 100k and 1M rows).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

# Linux carries a parent's peak RSS over fork and exec into the child's ru_maxrss, so pytest (large)
# does not start the command itself: a bare interpreter does, waits for it and prints its ru_maxrss.
_LAUNCHER = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(proc.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""
ROWS = 200_000
BOUND_KB = 64 * 1024  # the whole-file reader needed 93 MB for these 200,000 rows; streaming needs ~36 MB


@pytest.mark.slow
def test_import_of_200k_rows_stays_in_bounded_memory(project):
    path = project.root / "big.csv"
    with path.open("w", encoding="utf-8") as fh:
        fh.write("email,name,series,locale\n")
        for i in range(ROWS):
            fh.write(f"lecteur{i:06d}@example.org,Lecteur n°{i},{'wec;le-mans' if i % 2 else 'gt'},fr_FR\n")
        fh.write("pas-une-adresse,X,wec,fr_FR\n")
    proc = subprocess.run([sys.executable, "-c", _LAUNCHER, sys.executable, "-m", "publisher", "--settings",
                           str(project.settings), "subscribers", "import", str(path)],
                          cwd=project.root, capture_output=True, text=True, timeout=300)
    code, maxrss_kb = (int(v) for v in proc.stdout.split()[-2:])
    assert code == 2, proc.stderr  # one bad row: reported, the others imported
    assert f"big.csv: line {ROWS + 2}: 'pas-une-adresse' is not an address" in proc.stderr
    assert f"{ROWS} new, 0 updated, 0 unchanged, 1 rejected" in proc.stdout
    assert maxrss_kb < BOUND_KB, f"peak RSS {maxrss_kb / 1024:.0f} MB"
    with sqlite3.connect(project.root / "var" / "publisher.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM subscribers").fetchone()[0] == ROWS
        assert db.execute("SELECT count(*) FROM subscriptions").fetchone()[0] == ROWS // 2 * 3
