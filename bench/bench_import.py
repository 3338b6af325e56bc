"""Subscriber import benchmark: `publisher subscribers import` of a large CSV, its time and peak memory.

    .venv/bin/python bench/bench_import.py                       # 100,000 and 1,000,000 rows
    .venv/bin/python bench/bench_import.py --rows 10000,100000   # a quick run
    .venv/bin/python bench/bench_import.py --src /tmp/old-tree   # the same runs on another source tree

Each size gets its own CSV (in a temporary folder) and a fresh store, and runs the real command as a
subprocess, as a user would: `python -m publisher --settings ... subscribers import FILE.csv`. One row in a
thousand has a bad address, so the error path (line numbers, reasons, exit code 2) is part of the run.

The baseline in the same run is `publisher --version` (interpreter and package start-up, no work). Peak
memory is the child's ru_maxrss from wait4 (what getrusage(RUSAGE_CHILDREN) reports, child by child).
Linux carries a parent's peak over fork and exec into its child's ru_maxrss, so this parent stays small
(it writes the CSV line by line, imports nothing) and prints its own peak: no figure can be below it.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NOW = "2026-11-20T10:00:00+00:00"
SERIES = ["wec;le-mans", "gt", "elms", "wec;elms;asian-lms", "imsa", "rallycross-france", "le-mans", "gt;imsa"]
FIRST = ["Claire", "Thomas", "Julie", "Nicolas", "Élodie", "Jérôme", "Amélie", "François", "Zoé", "Loïc"]
LAST = ["Martin", "Bernard", "Dubois", "Petit", "Lefèvre", "Morel", "Girard", "Rousseau", "Faure", "Mercier"]

def write_csv(path: Path, rows: int) -> int:
    """`rows` subscriber rows after a header; returns how many have a bad address (1 in 1,000)."""
    bad = 0
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write("email,name,series,locale\n")
        for i in range(rows):
            if i % 1000 == 999:
                fh.write(f"reader{i:07d}-at-example.org,Sans Arobase,wec,fr_FR\n")
                bad += 1
                continue
            fh.write(f"reader{i:07d}@example.org,{FIRST[i % 10]} {LAST[i // 10 % 10]},{SERIES[i % len(SERIES)]},"
                     f"{'fr_FR' if i % 3 else 'fr_BE'}\n")
    return bad


def project(root: Path) -> Path:
    """Settings and campaigns copied from the repository, the store under `root`."""
    (root / "campaigns").mkdir(parents=True)
    for f in (REPO / "campaigns").glob("*.toml"):
        shutil.copy(f, root / "campaigns" / f.name)
    text = (REPO / "settings.toml").read_text(encoding="utf-8")
    text = re.sub(r'(?m)^store = .*$', f'store = "{root / "store.sqlite3"}"', text)
    text = re.sub(r'(?m)^campaigns = .*$', f'campaigns = "{root / "campaigns"}"', text)
    text = text.replace('"samples/', f'"{REPO / "samples"}/')
    (root / "settings.toml").write_text(text, encoding="utf-8")
    return root / "settings.toml"


def run(src: Path, settings: Path, *args: str) -> tuple[int, float, float, str, str]:
    """(exit code, wall seconds, the child's ru_maxrss in MB, stdout, stderr) of one `publisher` child."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")} | {"PYTHONPATH": str(src)}
    out, err = settings.parent / "out", settings.parent / "err"
    t = time.perf_counter()
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen([sys.executable, "-m", "publisher", "--settings", str(settings), "--now", NOW, *args],
                                stdout=o, stderr=e, env=env, cwd=settings.parent)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    return (os.waitstatus_to_exitcode(status), wall, usage.ru_maxrss / 1024,
            out.read_text(encoding="utf-8", errors="replace"), err.read_text(encoding="utf-8", errors="replace"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", default="100000,1000000", help="comma-separated CSV sizes (default: 100000,1000000)")
    p.add_argument("--src", type=Path, default=REPO, help="source tree whose publisher package runs (default: this one)")
    a = p.parse_args()
    sizes = [int(s) for s in a.rows.split(",")]
    print(f"publisher from {a.src}; python {sys.version.split()[0]}")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        base = Path(tmp)
        code, wall, maxrss, _, err = run(a.src, project(base / "base"), "--version")
        if code != 0:
            raise SystemExit(f"publisher --version failed ({code}):\n{err[-2000:]}")
        results.append(("publisher --version", 0, wall, maxrss, code, ""))
        for n in sizes:
            settings = project(base / f"rows-{n}")
            csv_path = settings.parent / "subscribers.csv"
            bad = write_csv(csv_path, n)
            mb = csv_path.stat().st_size / 1e6
            code, wall, maxrss, out, err = run(a.src, settings, "subscribers", "import", str(csv_path))
            want = 2 if bad else 0
            if code != want:
                raise SystemExit(f"import of {n} rows exited {code}, expected {want}:\n{out[-1000:]}\n{err[-3000:]}")
            shown = sum(1 for line in err.splitlines() if ": line " in line)
            summary = out.strip().splitlines()[-1].split(": ", 1)[-1]
            results.append((f"import {n:,} rows ({mb:.0f} MB)", n, wall, maxrss, code, f"{bad} bad rows, {shown} printed; {summary}"))
            csv_path.unlink()
    start_up = results[0][3]
    print(f"\n{'run':<30}{'seconds':>9}{'rows/s':>10}{'peak RSS':>11}{'− start-up':>12}{'exit':>6}")
    for name, n, wall, maxrss, code, _ in results:
        rate = f"{n / wall:,.0f}" if n else "-"
        print(f"{name:<30}{wall:>9.2f}{rate:>10}{maxrss:>8.0f} MB{maxrss - start_up:>9.0f} MB{code:>6}")
    for name, *_, note in results[1:]:
        print(f"  {name}: {note}")
    parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worst = max(r[3] for r in results[1:]) if len(results) > 1 else float("nan")
    print(f"\n(this parent's own peak, the floor of every figure above: {parent:.0f} MB)")
    print(f"goal: peak RSS under 100 MB at every size: {worst:.0f} MB {'ok' if worst < 100 else 'MISSED'}")


if __name__ == "__main__":
    main()
