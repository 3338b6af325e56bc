"""Fan-out benchmark: one rendered digest to N subscribers through a loopback SMTP sink.

    .venv/bin/python bench/bench_fanout.py                          # 10/30/100 KB x 5,000/100,000, 3 rounds
    .venv/bin/python bench/bench_fanout.py --counts 5000 --rounds 3 # the quick run
    .venv/bin/python bench/bench_fanout.py --mailmerge              # also mailmerge, on 2,000 rows

The sink is a plain asyncio SMTP server in its own process that offers PIPELINING, answers 250 to
everything and counts the messages (like any Linux relay on a LAN: it does not answer a message before
its final `.` has arrived, so a client that sends that `.` in a small write of its own waits ~40 ms for
Nagle and the delayed ACK). Against it, over the same number of connections, for each message size and
list size, in alternating order, each in its own process:

  ours       `publisher.pipeline.dispatch` on the email channel: planning, ledger (SQLite) and wire journal
             included, each recipient's copy personalised (name, address, signed unsubscribe link);
  rfc2920    the baseline: a raw RFC 2920 client on plain sockets, one thread per connection, sending the
             same pre-built bytes with the next envelope pipelined behind each message's end of data;
  smtplib    smtplib making publisher's calls one command at a time (MAIL, RCPT, DATA, then the message
             and its end of data in one write), the same bytes;
  mailmerge  (--mailmerge) mailmerge from PyPI, installed on first use into bench/.env, on the first
             --mailmerge-count rows: it opens one connection per message.

It prints the median messages/second of the rounds and ours ÷ each other sender. Goal: ours ≥ 0.5×
rfc2920 for every size and list size. Peak RSS is each child's own high-water mark (VmHWM); CPU/msg and
switches are our process's user+system time and context switches per message (getrusage), the cost
the machine pays whatever else runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
EDITION = "2026-W47"
SECRET = "bench-unsubscribe-secret-0123456789"
SENDER = "newsletter@endurance-info.com"

# -- the sink --------------------------------------------------------------------------------------


class _Sink(asyncio.Protocol):
    counter = None

    def connection_made(self, transport):
        self.t, self.buf, self.in_data, self.scan = transport, bytearray(), False, 0
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
                _Sink.counter.value += 1
                out.append(b"250 2.0.0 queued\r\n")
                continue
            i = buf.find(b"\r\n")
            if i < 0:
                break
            verb = bytes(buf[:4]).upper()
            del buf[:i + 2]
            if verb == b"EHLO":
                out.append(b"250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                self.in_data, self.scan = True, 0
                out.append(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                out.append(b"221 bye\r\n")
                self.t.write(b"".join(out))
                self.t.close()
                return
            else:  # HELO, MAIL, RCPT, RSET, NOOP
                out.append(b"250 OK\r\n")
        if out:
            self.t.write(b"".join(out))


def _sink_main(port_value, counter, ready):
    _Sink.counter = counter

    async def main():
        server = await asyncio.get_running_loop().create_server(_Sink, "127.0.0.1", 0, backlog=512)
        port_value.value = server.sockets[0].getsockname()[1]
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


class Sink:
    def __enter__(self):
        self.counter, port, ready = mp.Value("q", 0, lock=False), mp.Value("i", 0), mp.Event()
        self.proc = mp.Process(target=_sink_main, args=(port, self.counter, ready), daemon=True)
        self.proc.start()
        ready.wait(10)
        self.port = port.value
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.join()


# -- the edition and the list -----------------------------------------------------------------------


def _settings_text(port: int, store: Path, connections: int) -> str:
    text = (REPO / "settings.toml").read_text(encoding="utf-8")
    text = re.sub(r"(?ms)^\[smtp\]\n.*?(?=^\[)", f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
                                                  f"connections = {connections}\n\n", text)
    text = text.replace('delivery = "outbox"', 'delivery = "live"')
    text = re.sub(r'(?m)^store = .*$', f'store = "{store}"', text)
    text = re.sub(r'(?m)^campaigns = .*$', 'campaigns = "campaigns"', text)
    return text


def _digest(settings, campaign, articles, size_kb: int):
    """The real renderer on sample articles: the edition whose message is closest to `size_kb` KB."""
    from dataclasses import replace

    from publisher.channels.email.message import build
    from publisher.models import Edition
    from publisher.render.email import Renderer

    renderer = Renderer(settings)
    pool = list(articles)
    while len(pool) < 160:  # repeat the sample week (other ids and links) for the biggest digests
        k = len(pool)
        pool += [replace(a, id=f"{a.id}-{k}", link=f"{a.link}?r={k}") for a in articles]
    best = None
    for n in range(1, len(pool) + 1):
        edition = Edition(campaign="endurance", id=EDITION, window_start=NOW - timedelta(days=14), window_end=NOW,
                          slot=NOW, articles=tuple(pool[:n]))
        rendered = renderer.render(edition, campaign)
        size = len(build(rendered, campaign, settings, NOW).personalise(_sample(settings, build(rendered, campaign, settings, NOW))))
        if best is None or abs(size - size_kb * 1000) < abs(best[1] - size_kb * 1000):
            best = (rendered, size)
        if size > size_kb * 1000:
            break
    return best[0]


def _sample(settings, template):
    from publisher.channels.email.message import Recipient, unsubscribe_link
    from publisher.web.tokens import Signer

    email = "lecteur000000@example.org"
    return Recipient(email, "Lecteur 0 Éloïse", unsubscribe_link(settings, Signer(SECRET.encode()).link("0123456789abcdef01234567", "endurance")),
                     template.message_id(email))


def prepare(root: Path, port: int, count: int, connections: int, size_kb: int) -> dict:
    """A project folder with settings, a campaign, the frozen digest of about `size_kb` KB and `count` subscribers."""
    from publisher.app import Context, load_settings
    from publisher.channels.email.message import build
    from publisher.config import load_campaigns
    from publisher.ingest.feeds import parse
    from publisher.pipeline import freeze

    (root / "campaigns").mkdir(parents=True)
    (root / "settings.toml").write_text(_settings_text(port, root / "store.sqlite3", connections), encoding="utf-8")
    text = (REPO / "campaigns" / "endurance.toml").read_text(encoding="utf-8")
    text = re.sub(r"(?m)^channels = .*$", 'channels = ["email"]', re.sub(r"(?m)^max_articles = .*$", "max_articles = 200", text))
    (root / "campaigns" / "endurance.toml").write_text(re.sub(r"(?m)^min_articles = .*$", "min_articles = 1", text), encoding="utf-8")
    settings = load_settings(root / "settings.toml")
    campaign = load_campaigns(settings, ["endurance"])[0]
    articles = []
    for feed in sorted((REPO / "samples" / "feeds").glob("*.xml")):
        articles += parse(feed.read_bytes(), source=str(feed), now=NOW).articles
    articles.sort(key=lambda a: a.published, reverse=True)
    rendered = _digest(settings, campaign, articles, size_kb)
    ctx = Context.open(root / "settings.toml", now=NOW)
    freeze(ctx, rendered)
    db = ctx.store.conn
    stamp = NOW.isoformat()
    with ctx.store.transaction():
        db.executemany("INSERT INTO subscribers (id, email, name, locale, created_at, updated_at) VALUES (?,?,?,?,?,?)",
                       ((i + 1, f"lecteur{i:06d}@example.org", f"Lecteur {i} Éloïse", "fr_FR", stamp, stamp) for i in range(count)))
        db.executemany("INSERT INTO subscriptions (subscriber_id, list) VALUES (?, 'wec')", ((i + 1,) for i in range(count)))
    ctx.close()
    template = build(rendered, campaign, settings, NOW)
    eml = template.personalise(_sample(settings, template))
    (root / "one.eml").write_bytes(eml)
    return {"articles": len(rendered.edition.articles), "message": len(eml), "rendered": rendered, "settings": settings}


# -- the senders (children) -------------------------------------------------------------------------


def child_ours(root: str) -> None:
    from publisher.app import Context
    from publisher.config import load_campaigns
    from publisher.pipeline import dispatch, frozen
    from publisher.progress import Progress

    ctx = Context.open(Path(root) / "settings.toml", now=NOW)
    ctx.progress = Progress(quiet=True)
    campaign = load_campaigns(ctx.settings, ["endurance"])[0]
    rendered = frozen(ctx, campaign, EDITION)
    before = resource.getrusage(resource.RUSAGE_SELF)
    t = time.perf_counter()
    (report,) = dispatch(ctx, campaign, rendered, ["email"])
    elapsed = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    switches = (after.ru_nvcsw - before.ru_nvcsw) + (after.ru_nivcsw - before.ru_nivcsw)
    print(json.dumps({"sent": report.sent, "seconds": elapsed, "messages": report.messages,
                      "cpu_us": cpu / max(report.sent, 1) * 1e6, "switches": switches / max(report.sent, 1)}))


def _shares(count: int, connections: int) -> list[range]:
    per = [count // connections + (1 if i < count % connections else 0) for i in range(connections)]
    starts = [sum(per[:i]) for i in range(connections)]
    return [range(s, s + n) for s, n in zip(starts, per)]


def _run_threads(work, count: int, connections: int) -> None:
    start = threading.Barrier(connections + 1)
    threads = [threading.Thread(target=work, args=(share, start)) for share in _shares(count, connections)]
    for th in threads:
        th.start()
    start.wait()
    t = time.perf_counter()
    for th in threads:
        th.join()
    print(json.dumps({"sent": count, "seconds": time.perf_counter() - t}))


class _Replies:
    """Reads SMTP replies off a plain socket (multi-line aware)."""

    def __init__(self, sock: socket.socket):
        self.sock, self.buf = sock, bytearray()

    def code(self) -> int:
        while True:
            i = self.buf.find(b"\r\n")
            while i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                if line[3:4] != b"-":
                    return int(line[:3])
                i = self.buf.find(b"\r\n")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("sink closed the connection")
            self.buf += chunk


def child_rfc2920(port: int, count: int, connections: int, eml: str) -> None:
    """The baseline: pre-built bytes, RFC 2920 pipelining, one write per message."""
    data = Path(eml).read_bytes() + b".\r\n"

    def envelope(i: int) -> bytes:
        return f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<lecteur{i:06d}@example.org>\r\nDATA\r\n".encode("ascii")

    def work(share: range, start: threading.Barrier) -> None:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        r = _Replies(sock)
        r.code()
        sock.sendall(b"EHLO bench\r\n")
        r.code()
        start.wait()
        ids = list(share)
        if ids:
            sock.sendall(envelope(ids[0]))
        for k, i in enumerate(ids):
            if (r.code(), r.code(), r.code()) != (250, 250, 354):
                raise SystemExit("sink refused an envelope")
            sock.sendall(data + (envelope(ids[k + 1]) if k + 1 < len(ids) else b""))
            if r.code() != 250:
                raise SystemExit("sink refused a message")
        sock.sendall(b"QUIT\r\n")
        sock.close()

    _run_threads(work, count, connections)


def child_smtplib(port: int, count: int, connections: int, eml: str) -> None:
    """smtplib making publisher's calls, one command at a time, the message and its end in one write."""
    import smtplib

    data = Path(eml).read_bytes() + b".\r\n"

    def work(share: range, start: threading.Barrier) -> None:
        smtp = smtplib.SMTP("127.0.0.1", port)
        smtp.ehlo()
        smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start.wait()
        for i in share:
            smtp.mail(SENDER)
            smtp.rcpt(f"lecteur{i:06d}@example.org")
            smtp.docmd("DATA")
            smtp.send(data)
            if smtp.getreply()[0] != 250:
                raise SystemExit("sink refused a message")
        smtp.quit()

    _run_threads(work, count, connections)


# Peak RSS: getrusage(RUSAGE_CHILDREN)/wait4 on Linux keeps the parent's peak from before exec (this
# process holds the renderer, ~60 MB), which would hide the child's own figure. So every child runs
# under this wrapper, which reports the kernel's high-water mark of its own exec'd image (VmHWM).
_HWM_WRAPPER = """
import atexit, os, runpy, sys
def _hwm():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            open(os.environ['BENCH_HWM_FILE'], 'w').write(line.split()[1])
atexit.register(_hwm)
sys.argv = sys.argv[1:]
if sys.argv[0] == '--entry':  # a console script, 'module:function'
    sys.argv = sys.argv[1:]
    mod, func = sys.argv[0].split(':')
    sys.exit(getattr(__import__(mod, fromlist=[func]), func)())
else:
    runpy.run_path(sys.argv[0], run_name='__main__')
"""


def _run_child(args: list[str], env: dict | None = None) -> tuple[dict, float, float]:
    """(its JSON line, wall seconds, peak RSS in MB) of a child process: args = [python, script or --entry mod:func, ...]."""
    hwm = Path(tempfile.mktemp(prefix="bench-hwm-"))
    env = dict(env or os.environ) | {"BENCH_HWM_FILE": str(hwm)}
    t = time.perf_counter()
    proc = subprocess.run([args[0], "-c", _HWM_WRAPPER, *args[1:]], capture_output=True, env=env, cwd=REPO)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"child {' '.join(args[:4])} failed ({proc.returncode}):\n{proc.stderr.decode(errors='replace')[-3000:]}")
    out = proc.stdout.decode().strip().splitlines()
    info = json.loads(out[-1]) if out and out[-1].startswith("{") else {}
    peak = int(hwm.read_text()) / 1024 if hwm.exists() else float("nan")
    hwm.unlink(missing_ok=True)
    return info, wall, peak


# -- mailmerge -------------------------------------------------------------------------------------


def mailmerge_bin() -> Path:
    env = REPO / "bench" / ".env"
    exe = env / "bin" / "mailmerge"
    if not exe.exists():
        print("installing mailmerge into bench/.env (once) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        subprocess.run([str(env / "bin" / "pip"), "install", "-q", "mailmerge"], check=True)
    return exe


def _jinja_literal(text: str) -> str:
    """Our body with its personal tokens as mailmerge fields; the rest kept literal."""
    out = []
    for piece in re.split(r"(%%UNSUBSCRIBE_URL%%|%%EMAIL%%|%%NAME%%)", text):
        field = {"%%UNSUBSCRIBE_URL%%": "unsubscribe_url", "%%EMAIL%%": "email", "%%NAME%%": "name"}.get(piece)
        out.append(f"{{{{{field}}}}}" if field else "{% raw %}" + piece + "{% endraw %}")
    return "".join(out)


def mailmerge_files(root: Path, port: int, count: int, prep: dict) -> list[str]:
    from publisher.channels.email.message import unsubscribe_link
    from publisher.web.tokens import Signer

    rendered, settings = prep["rendered"], prep["settings"]
    (root / "mm_server.conf").write_text(f"[smtp_server]\nhost = 127.0.0.1\nport = {port}\nratelimit = 0\n", encoding="utf-8")
    (root / "mm_template.txt").write_text(
        "TO: {{name}} <{{email}}>\nFROM: Endurance-Info <" + SENDER + ">\n"
        "SUBJECT: " + rendered.subject + "\nMIME-Version: 1.0\n"
        'Content-Type: multipart/alternative; boundary="bench-boundary"\n\n'
        "--bench-boundary\nContent-Type: text/plain; charset=utf-8\n\n" + _jinja_literal(rendered.text) + "\n"
        "--bench-boundary\nContent-Type: text/html; charset=utf-8\n\n" + _jinja_literal(rendered.html) + "\n"
        "--bench-boundary--\n", encoding="utf-8")
    signer = Signer(SECRET.encode())
    with (root / "mm_database.csv").open("w", encoding="utf-8") as fh:
        fh.write("email,name,unsubscribe_url\n")
        for i in range(count):
            email = f"lecteur{i:06d}@example.org"
            fh.write(f'{email},Lecteur {i} Éloïse,{unsubscribe_link(settings, signer.link(f"{i:024x}", "endurance"))}\n')
    env = REPO / "bench" / ".env" / "bin" / "python"
    mailmerge_bin()
    return [str(env), "--entry", "mailmerge.__main__:main", "--no-dry-run", "--no-limit", "--output-format", "text",
            "--template", str(root / "mm_template.txt"), "--database", str(root / "mm_database.csv"),
            "--config", str(root / "mm_server.conf")]


# -- main ------------------------------------------------------------------------------------------

SENDERS = ("ours", "rfc2920", "smtplib")


def _one(name: str, sink: Sink, root: Path, fresh: Path, count: int, connections: int, env: dict) -> tuple[float, float, dict]:
    """One round of one sender: (messages/second, peak RSS MB, what ours says of its CPU)."""
    sink.counter.value = 0
    if name == "ours":
        shutil.copy(fresh, root / "store.sqlite3")  # a fresh ledger every round
        for extra in ("-wal", "-shm"):
            (root / f"store.sqlite3{extra}").unlink(missing_ok=True)
        shutil.rmtree(root / "journal", ignore_errors=True)
        info, _, rss = _run_child([sys.executable, __file__, "--child", "ours", "--root", str(root)], env)
        assert info["sent"] == count, info
    else:
        info, _, rss = _run_child([sys.executable, __file__, "--child", name, "--port", str(sink.port), "--count", str(count),
                                   "--connections", str(connections), "--eml", str(root / "one.eml")])
    assert sink.counter.value == count, (name, sink.counter.value, count)
    return count / info["seconds"], rss, info


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--counts", default="5000,100000", help="list sizes, comma-separated (default 5000,100000)")
    p.add_argument("--sizes", default="10,30,100", help="message sizes in KB, comma-separated (default 10,30,100)")
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3, help="rounds per sender, alternating (default 3)")
    p.add_argument("--mailmerge", action="store_true", help="also time mailmerge on --mailmerge-count rows")
    p.add_argument("--mailmerge-count", type=int, default=2_000)
    p.add_argument("--child", choices=SENDERS, help=argparse.SUPPRESS)
    p.add_argument("--root", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--count", type=int, help=argparse.SUPPRESS)
    p.add_argument("--eml", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child == "ours":
        return child_ours(a.root)
    if a.child == "rfc2920":
        return child_rfc2920(a.port, a.count, a.connections, a.eml)
    if a.child == "smtplib":
        return child_smtplib(a.port, a.count, a.connections, a.eml)

    counts = [int(x) for x in a.counts.split(",")]
    sizes = [int(x) for x in a.sizes.split(",")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")} | {"PUBLISHER_UNSUBSCRIBE_SECRET": SECRET}
    table = []
    with Sink() as sink:
        for size in sizes:
            for count in counts:
                root = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
                try:
                    t = time.perf_counter()
                    prep = prepare(root, sink.port, count, a.connections, size)
                    fresh = root / "fresh.sqlite3"
                    shutil.copy(root / "store.sqlite3", fresh)
                    print(f"{size} KB x {count:,}: digest of {prep['articles']} articles, message {prep['message'] / 1000:.1f} KB,"
                          f" prepared in {time.perf_counter() - t:.1f}s", file=sys.stderr)
                    rates: dict[str, list[float]] = {n: [] for n in SENDERS}
                    peaks: dict[str, float] = {n: 0.0 for n in SENDERS}
                    cpu: list[tuple[float, float]] = []
                    for r in range(a.rounds):
                        order = SENDERS[r % 3:] + SENDERS[:r % 3]  # alternate who goes first
                        for name in order:
                            rate, rss, info = _one(name, sink, root, fresh, count, a.connections, env)
                            rates[name].append(rate)
                            peaks[name] = max(peaks[name], rss)
                            if name == "ours":
                                cpu.append((info["cpu_us"], info["switches"]))
                            print(f"  round {r + 1} {name:<8} {rate:>9,.0f} msgs/s  {rss:5.0f} MB", file=sys.stderr)
                    mm = None
                    if a.mailmerge:
                        n = min(a.mailmerge_count, count)
                        sink.counter.value = 0
                        _, wall, rss = _run_child(mailmerge_files(root, sink.port, n, prep))
                        assert sink.counter.value == n
                        mm = n / wall
                    table.append((size, prep["message"], count, {k: statistics.median(v) for k, v in rates.items()}, peaks, mm,
                                  statistics.median(c for c, _ in cpu), statistics.median(w for _, w in cpu)))
                finally:
                    shutil.rmtree(root, ignore_errors=True)

    print(f"\nfan-out over {a.connections} connections to a loopback sink offering PIPELINING; median of {a.rounds}"
          f" alternating rounds; messages/second\n")
    head = (f"{'message':>9}{'list':>9}{'ours':>9}{'rfc2920':>9}{'smtplib':>9}{'ours/rfc2920':>14}{'ours/smtplib':>14}"
            f"{'ours RSS':>10}{'CPU/msg':>10}{'switches':>10}")
    if a.mailmerge:
        head += f"{'mailmerge':>11}{'ours/mm':>9}"
    print(head)
    missed = []
    for size, msg, count, med, peaks, mm, cpu_us, switches in table:
        ratio = med["ours"] / med["rfc2920"]
        line = (f"{msg / 1000:>6.1f} KB{count:>9,}{med['ours']:>9,.0f}{med['rfc2920']:>9,.0f}{med['smtplib']:>9,.0f}"
                f"{ratio:>13.2f}×{med['ours'] / med['smtplib']:>13.2f}×{peaks['ours']:>7.0f} MB{cpu_us:>7.0f} us{switches:>10.1f}")
        if mm:
            line += f"{mm:>11,.0f}{med['ours'] / mm:>8.1f}×"
        print(line)
        if ratio < 0.5:
            missed.append(f"{size} KB x {count:,}")
    print(f"\ngoal: ours ≥ 0.5× rfc2920 everywhere: {'ok' if not missed else 'MISSED for ' + ', '.join(missed)}")


if __name__ == "__main__":
    main()
