"""Senders benchmark: one `publisher send` next to two sending the same edition, on a PostgreSQL store.

    .venv/bin/python bench/bench_senders.py                                   # 2,000 and 10,000 subscribers, 0 and 5 ms
    .venv/bin/python bench/bench_senders.py --counts 500 --delay-ms 0 --rounds 1   # a quick run

One private PostgreSQL server on 127.0.0.1 (bench/pgserver.py; fsync and synchronous_commit on unless
--pg-durability says otherwise) holds the store; one SMTP sink on 127.0.0.1, in its own process, offers
PIPELINING, answers each message's end of data after --delay-ms (the relay's latency, which a second
sender can hide) and counts the messages each address received. For each list size a project copy
(settings.toml, campaigns/, samples/, templates/ as tests/conftest.py makes it) fetches the sample feeds,
imports N subscribers and freezes the edition endurance 2026-W47 into a template database; each round
sends it from a fresh copy of that database (CREATE DATABASE ... TEMPLATE), so rendering is not timed.

In alternating rounds, each configuration runs the real command as subprocesses started together,
`python -m publisher --settings S send endurance --edition 2026-W47 [--join]`, each sender with its own
settings file and [publisher].state_dir (its wire journal), the password in PUBLISHER_STORE_PASSWORD, on
the real clock (the edition is frozen already, so no --now is needed):

  1 sender     one process, --connections SMTP connections (the baseline);
  2 senders    two processes on the same edition (`--join`), --connections each;
  1 sender 2×  one process with twice the connections: what a second sender adds beyond more connections.

After every round the sink's counts must show each address exactly once (else the bench stops). It prints
the median messages/second of the rounds, over the wall time of the commands (start-up included) and
over the sink's own window (first to last message accepted), and 2 senders ÷ 1 sender.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pgserver  # bench/pgserver.py (puts the repository on sys.path)

from publisher.app import Context
from publisher.config import load_campaigns
from publisher.pipeline import fetch, prepare
from tests.support.email_project import EDITION, NOW, SECRET, configure_live, write_subscribers
from tests.support.postgres import SENDER, SENDER_PASSWORD

REPO = pgserver.REPO
CONFIGS = ("1 sender", "2 senders", "1 sender 2×")

# -- the sink ----------------------------------------------------------------------------------------


class _Sink(asyncio.Protocol):
    """SMTP with PIPELINING that accepts everything; each end of data answered `delay` seconds later."""

    delay = 0.0
    counts: Counter = Counter()
    window: list[float] = []  # monotonic time of the first and the last message accepted

    def connection_made(self, transport):
        self.t, self.buf, self.in_data, self.scan, self.rcpts = transport, bytearray(), False, 0, []
        self.queue: deque = deque()  # (due, bytes): replies keep their order behind a delayed one
        self.last_due, self.timer = 0.0, None
        transport.write(b"220 sink ESMTP\r\n")

    def data_received(self, data):
        buf = self.buf
        buf += data
        out = []
        while True:
            if self.in_data:
                i = buf.find(b"\r\n.\r\n", max(0, self.scan - 4))
                if i < 0:
                    self.scan = len(buf)
                    break
                del buf[:i + 5]
                self.in_data, self.scan = False, 0
                _Sink.counts.update(self.rcpts)
                now = time.monotonic()
                _Sink.window[:] = [_Sink.window[0] if _Sink.window else now, now]
                self.rcpts = []
                self._reply(out, b"250 2.0.0 queued\r\n", _Sink.delay)
                continue
            i = buf.find(b"\r\n")
            if i < 0:
                break
            line = bytes(buf[:i])
            del buf[:i + 2]
            verb = line[:4].upper()
            if verb == b"EHLO":
                self._reply(out, b"250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            elif verb == b"RCPT":
                self.rcpts.append(line[line.index(b"<") + 1:line.rindex(b">")].decode())
                self._reply(out, b"250 OK\r\n")
            elif verb in (b"MAIL", b"RSET"):
                self.rcpts = []
                self._reply(out, b"250 OK\r\n")
            elif verb == b"DATA":
                self.in_data, self.scan = True, 0
                self._reply(out, b"354 go ahead\r\n")
            elif verb == b"QUIT":
                self._reply(out, b"221 bye\r\n")
                self._flush(out)
                self.t.close()
                return
            else:  # HELO, NOOP
                self._reply(out, b"250 OK\r\n")
        self._flush(out)

    def _reply(self, out: list, data: bytes, delay: float = 0.0) -> None:
        if not delay and not self.queue:
            out.append(data)
            return
        self._flush(out)
        self.last_due = max(self.last_due, time.monotonic() + delay)
        self.queue.append((self.last_due, data))
        if self.timer is None:
            self.timer = asyncio.get_running_loop().call_at(self.queue[0][0], self._due)

    def _flush(self, out: list) -> None:
        if out and not self.t.is_closing():
            self.t.write(b"".join(out))
        out.clear()

    def _due(self) -> None:
        self.timer, now, out = None, time.monotonic(), []
        while self.queue and self.queue[0][0] <= now:
            out.append(self.queue.popleft()[1])
        self._flush(out)
        if self.queue:
            self.timer = asyncio.get_running_loop().call_at(self.queue[0][0], self._due)

    def connection_lost(self, exc):
        if self.timer:
            self.timer.cancel()


def _sink_main(control) -> None:
    """The sink's process: serves SMTP; on the control pipe, answers (counts, window) and resets them, and
    a number sent sets the delay (seconds) for what follows."""

    def command() -> None:
        what = control.recv()
        if isinstance(what, float):
            _Sink.delay = what
        control.send((dict(_Sink.counts), list(_Sink.window)))
        _Sink.counts.clear()
        _Sink.window.clear()

    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Sink, "127.0.0.1", 0, backlog=512)
        loop.add_reader(control.fileno(), command)
        control.send(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(main())


class Sink:
    """The sink in its own process (so it does not share a core's GIL with anything timed)."""

    def __init__(self, delay_ms: float = 0.0):
        self.control, theirs = mp.Pipe()
        self.proc = mp.Process(target=_sink_main, args=(theirs,), daemon=True)
        self.proc.start()
        self.port = self.control.recv()
        self.delay(delay_ms)

    def delay(self, ms: float) -> None:
        """From now on, answer each end of data `ms` milliseconds after it arrived (also resets the counts)."""
        self.control.send(ms / 1000)
        self.control.recv()

    def take(self) -> tuple[dict[str, int], list[float]]:
        """Messages per address and the (first, last) acceptance time since the last take."""
        self.control.send("take")
        return self.control.recv()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.join()


# -- the project and its store -----------------------------------------------------------------------


@dataclass
class Copy:
    """A project copy as tests/conftest.py makes one (tests/support/email_project.py works on it)."""

    root: Path

    @property
    def settings(self) -> Path:
        return self.root / "settings.toml"

    def write_settings(self, text: str) -> None:
        self.settings.write_text(text, encoding="utf-8")


def make_project(root: Path, server, port: int, count: int, connections: int) -> tuple[Copy, str, list[str]]:
    """A copy whose template database holds the fetched feeds, `count` subscribers and the frozen edition."""
    root.mkdir()
    shutil.copy(REPO / "settings.toml", root / "settings.toml")
    for folder in ("campaigns", "samples", "templates"):
        shutil.copytree(REPO / folder, root / folder)
    project = Copy(root)
    base = f"tpl_{count}"
    url = server.create_database(base, owner=SENDER)
    text = project.settings.read_text(encoding="utf-8")
    project.write_settings(text.replace('store = "var/publisher.sqlite3"', f'store = "{url}"'))
    configure_live(project, port, connections=connections)
    ctx = Context.open(project.settings, now=datetime.fromisoformat(NOW))
    try:
        assert all(r.ok for r in fetch(ctx))
    finally:
        ctx.close()
    addresses = write_subscribers(project, count)
    ctx = Context.open(project.settings, now=datetime.fromisoformat(NOW))
    try:
        rendered, skip = prepare(ctx, load_campaigns(ctx.settings, ["endurance"])[0], EDITION)
        assert rendered is not None, skip
    finally:
        ctx.close()
    return project, base, addresses


def sender_settings(project: Copy, url: str, name: str, connections: int) -> Path:
    """A settings file of its own for one sender: the round's database, its own state_dir and connections."""
    text = project.settings.read_text(encoding="utf-8")
    text = re.sub(r'(?m)^store = .*$', f'store = "{url}"\nstate_dir = "var/{name}"', text)
    text = re.sub(r"(?m)^connections = .*$", f"connections = {connections}", text)
    path = project.root / f"settings-{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def has_join() -> bool:
    """Whether this tree's `publisher send` takes --join (several senders on one edition)."""
    out = subprocess.run([sys.executable, "-m", "publisher", "send", "--help"], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout
    return "--join" in out


def one_round(config: str, project: Copy, server, base: str, sink: Sink, addresses: list[str], connections: int,
              join: bool, env: dict, tag: str) -> tuple[float, float, str]:
    """Send the edition from a fresh copy of the template with one configuration: (wall msgs/s, sink msgs/s, split)."""
    name = f"r_{tag}_{os.urandom(3).hex()}"
    with pgserver.psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{base}" OWNER {SENDER}')
    url = f"postgresql://{SENDER}@127.0.0.1:{server.port}/{name}"
    senders, conns = {"1 sender": (1, connections), "2 senders": (2, connections), "1 sender 2×": (1, 2 * connections)}[config]
    try:
        cmds = [[sys.executable, "-m", "publisher", "--settings", str(sender_settings(project, url, f"s{k}", conns)),
                 "send", "endurance", "--edition", EDITION, *(["--join"] if join else [])]
                for k in range(senders)]
        t = time.monotonic()
        procs = [subprocess.Popen(c, cwd=project.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for c in cmds]
        outs = [p.communicate(timeout=3600) for p in procs]
        wall = time.monotonic() - t
        for p, (out, err) in zip(procs, outs):
            if p.returncode:
                raise SystemExit(f"{config}: a sender exited {p.returncode}:\n{out}\n{err}")
        counts, window = sink.take()
        wrong = {a: counts.get(a, 0) for a in addresses if counts.get(a, 0) != 1}
        extra = set(counts) - set(addresses)
        if wrong or extra:
            raise SystemExit(f"{config}: {len(wrong)} addresses did not get exactly one message"
                             f" (e.g. {dict(list(wrong.items())[:5])}), {len(extra)} unknown addresses")
        # each sender's own report line ("email endurance/2026-W47: N sent, ..."): how the edition was shared
        sent = [int(m.group(1)) for out, _ in outs for m in re.finditer(r"(?m)^email \S+: (\d+) sent", out)]
        if sum(sent) != len(addresses):
            raise SystemExit(f"{config}: the senders report {' + '.join(map(str, sent))} sent, not {len(addresses)}")
        split_text = " + ".join(f"{n:,}" for n in sent)
        return len(addresses) / wall, (len(addresses) - 1) / max(window[1] - window[0], 1e-9), split_text
    finally:
        with pgserver.psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--counts", default="2000,10000", help="subscribers, comma-separated (default 2000,10000)")
    p.add_argument("--delay-ms", default="0,5", help="the sink's delay before accepting each message, ms (default 0,5)")
    p.add_argument("--connections", type=int, default=4, help="SMTP connections per sender (default 4)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per configuration (default 3)")
    p.add_argument("--pg-durability", choices=sorted(pgserver.DURABILITY), default="full",
                   help="full: fsync and synchronous_commit on (default); async: synchronous_commit off; none: fsync off")
    a = p.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # the table after the progress lines, also in a pipe
    counts = [int(x) for x in a.counts.split(",")]
    delays = [float(x) for x in a.delay_ms.split(",")]
    started = time.perf_counter()
    join = has_join()
    configs = CONFIGS if join else ("1 sender", "1 sender 2×")
    if not join:
        print("this tree's `publisher send` has no --join: timing one sender only", file=sys.stderr)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_") and k != "PYTHONDONTWRITEBYTECODE"}
    env |= {"PUBLISHER_UNSUBSCRIBE_SECRET": SECRET, "PUBLISHER_STORE_PASSWORD": SENDER_PASSWORD}
    os.environ.update({"PUBLISHER_UNSUBSCRIBE_SECRET": SECRET, "PUBLISHER_STORE_PASSWORD": SENDER_PASSWORD})
    server = pgserver.start(a.pg_durability)
    table = []
    try:
        print(pgserver.describe(server) + f"  [--pg-durability {a.pg_durability}]; {os.cpu_count()} CPUs")
        with tempfile.TemporaryDirectory(prefix="bench-senders-") as tmp_name:
            tmp = Path(tmp_name)
            sink = Sink()
            try:
                for count in counts:
                    t = time.perf_counter()
                    project, base, addresses = make_project(tmp / f"p{count}", server, sink.port, count, a.connections)
                    print(f"{count:,} subscribers: prepared in {time.perf_counter() - t:.1f}s", file=sys.stderr)
                    for delay in delays:
                        sink.delay(delay)
                        wall: dict[str, list[float]] = {c: [] for c in configs}
                        window: dict[str, list[float]] = {c: [] for c in configs}
                        for r in range(a.rounds):
                            k = r % len(configs)
                            for config in configs[k:] + configs[:k]:  # alternate who goes first
                                w, s, split = one_round(config, project, server, base, sink, addresses, a.connections,
                                                        join, env, f"{count}_{r}")
                                wall[config].append(w)
                                window[config].append(s)
                                print(f"  {delay:g} ms round {r + 1} {config:<12} {w:>7,.0f} msgs/s (wall) {s:>7,.0f} msgs/s"
                                      f" (sink); each of {count:,} addresses got exactly one message; sent per sender: {split}",
                                      file=sys.stderr)
                        table.append((count, delay, {c: statistics.median(v) for c, v in wall.items()},
                                      {c: statistics.median(v) for c, v in window.items()}))
            finally:
                sink.stop()
    finally:
        server.stop()

    print(f"\none edition to N subscribers, {a.connections} SMTP connections per sender, a loopback sink that accepts each"
          f" message after the delay; median of {a.rounds} alternating rounds; messages/second over the commands' wall"
          f" time (start-up included) | over the sink's window (first to last message)\n")
    head = f"{'list':>8}{'delay':>8}"
    for c in configs:
        head += f"{c:>24}"
    if join:
        head += f"{'2 senders ÷ 1':>18}"
    print(head)
    for count, delay, w, s in table:
        line = f"{count:>8,}{delay:>6g}ms"
        for c in configs:
            line += f"{w[c]:>11,.0f} |{s[c]:>10,.0f}"
        if join:
            line += f"{w['2 senders'] / w['1 sender']:>8.2f}× |{s['2 senders'] / s['1 sender']:>6.2f}×"
        print(line)
    print("\nevery round: each address got exactly one message (the sink's counts)")
    print(f"\nbench took {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
