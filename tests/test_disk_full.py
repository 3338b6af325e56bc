"""A disk that fills up in the middle of a real `publisher send`: one clear line, exit 4, what was on the
wire recorded at once (nothing left `sending`), the rest planned, and the rerun completes without a copy twice.

The store and the wire journal live on a small tmpfs mounted in a private mount namespace (`unshare`),
filled to the last byte once the SMTP server has received some messages: a real ENOSPC, from the kernel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from support.email_project import ENV, ledger, prepared, send_args, store_path
from support.smtp_servers import SmtpServer

_SCRIPT = r'''
set -u
mount -t tmpfs -o size=24m tmpfs "$VAR" || exit 97
cp -a "$PREP/." "$VAR/"
( while [ ! -e "$TRIGGER" ]; do sleep 0.005; done; cat /dev/zero > "$VAR/filler" 2>/dev/null; touch "$FULL" ) &
"$PYTHON" -m publisher --settings "$SETTINGS" "$@"
rc=$?
wait
rm -f "$VAR/filler"
cp -a "$VAR/." "$OUT/"
exit $rc
'''


def _unshare() -> list[str]:
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed for the disk-full test")
    # as root a private mount namespace is enough; otherwise a user namespace maps us to root in it
    return ["unshare", "--mount", "--propagation", "private"] + ([] if os.geteuid() == 0 else ["--map-root-user"])


def test_disk_full_mid_send_stops_cleanly_records_what_was_on_the_wire_and_the_rerun_completes(project):
    with SmtpServer(delay=0.01) as srv:
        addrs = prepared(project, srv.port, 1500, connections=3)
        var = store_path(project).parent
        prep, out = project.root / "var-prepared", project.root / "var-after"
        shutil.move(var, prep)
        var.mkdir()
        out.mkdir()
        trigger, full = project.root / "fill-now", project.root / "filled"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")} | ENV | {
            "VAR": str(var), "PREP": str(prep), "OUT": str(out), "TRIGGER": str(trigger), "FULL": str(full),
            "PYTHON": sys.executable, "SETTINGS": str(project.settings)}
        proc = subprocess.Popen([*_unshare(), "sh", "-c", _SCRIPT, "sh", *send_args()], cwd=project.root, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        end = time.monotonic() + 60
        while len(srv.received) < 40 and time.monotonic() < end and proc.poll() is None:
            time.sleep(0.002)
        trigger.touch()  # fill the disk under the running send
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode != 97, f"could not mount a tmpfs in a private namespace: {stderr}"
        assert full.exists(), "the disk was never filled"
        assert proc.returncode == 4, stdout + stderr
        assert "Traceback" not in stderr and "Traceback" not in stdout
        errors = [line for line in stderr.splitlines() if line.startswith("publisher: error:")]
        assert len(errors) == 1, stderr
        assert errors[0].startswith("publisher: error: email endurance/2026-W47: disk full: cannot write the ")
        assert "No space left on device" in errors[0] or "database or disk is full" in errors[0]
        assert "free space on the disk of" in errors[0] and "rerun 'publisher send endurance'" in errors[0]

        # the ledger as the stopped process left it: nothing in `sending`, every message the server has is
        # recorded sent (or unknown), nothing else sent; the rest planned
        shutil.rmtree(var)
        shutil.move(out, var)
        rows = ledger(project)
        states = {a: s for a, (s, _) in rows.items()}
        assert "sending" not in states.values()
        received = srv.counts()
        assert 40 <= len(received) < len(addrs), "the disk filled mid-send"
        assert all(n == 1 for n in received.values())
        assert {a for a, s in states.items() if s == "sent"} <= set(received)
        assert {a for a, s in states.items() if s in ("sent", "unknown")} == set(received)
        assert {a for a, s in states.items() if s == "planned"} == set(addrs) - set(received)

        # space is back: the rerun sends the rest, nobody twice
        again = project.cli(*send_args(), env=ENV, timeout=120)
        assert again.returncode in (0, 4), again.stdout + again.stderr
        final = ledger(project)
        assert all(s in ("sent", "unknown") for s, _ in final.values())
        assert set(srv.counts()) == set(addrs) and all(n == 1 for n in srv.counts().values())
