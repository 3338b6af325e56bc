"""Fan-out benchmark: one rendered digest to N subscribers through a loopback SMTP sink.

    .venv/bin/python bench/bench_fanout.py                 # 100,000 subscribers, 4 connections
    .venv/bin/python bench/bench_fanout.py --count 5000    # a quick run

In the same run, against the same sink (a minimal asyncio SMTP server in its own process that answers
250 to everything and counts the messages):
  ours       `publisher.pipeline.dispatch` on the email channel: planning, ledger (SQLite) and wire
             journal included, in its own process (peak RSS from wait4);
  replay     the limit: smtplib.sendmail of identical pre-built bytes over the same number of connections;
  mailmerge  mailmerge from PyPI (installed on first use into bench/.env, never into the project venv),
             same template and list, rate limit off. It opens one connection per message and renders
             each one, so its rate is steady: it runs on the first --mailmerge-count rows of the list
             (default 2,000; 0 = all) and its messages/second are compared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import shutil
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
                out.append(b"250-sink\r\n250 8BITMIME\r\n")
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


def prepare(root: Path, port: int, count: int, connections: int) -> dict:
    """A project folder with settings, a campaign, the frozen digest and `count` subscribers."""
    from publisher.config import load_campaigns, load_settings
    from publisher.feeds import parse
    from publisher.models import Edition
    from publisher.pipeline import Context, freeze
    from publisher.render import Renderer

    (root / "campaigns").mkdir(parents=True)
    (root / "settings.toml").write_text(_settings_text(port, root / "store.sqlite3", connections), encoding="utf-8")
    shutil.copy(REPO / "campaigns" / "endurance.toml", root / "campaigns" / "endurance.toml")
    text = (root / "campaigns" / "endurance.toml").read_text(encoding="utf-8")
    (root / "campaigns" / "endurance.toml").write_text(
        re.sub(r"(?m)^channels = .*$", 'channels = ["email"]', re.sub(r"(?m)^max_articles = .*$", "max_articles = 40", text)),
        encoding="utf-8")
    settings = load_settings(root / "settings.toml")
    campaign = load_campaigns(settings, ["endurance"])[0]
    articles = []
    for feed in sorted((REPO / "samples" / "feeds").glob("*.xml")):
        articles += parse(feed.read_bytes(), source=str(feed), now=NOW).articles
    articles.sort(key=lambda a: a.published, reverse=True)
    renderer = Renderer(settings)
    # the real renderer on the sample articles; as many as it takes for a digest of 60-90 KB
    for n in range(12, len(articles) + 1, 2):
        edition = Edition(campaign="endurance", id=EDITION, window_start=NOW - timedelta(days=14), window_end=NOW,
                          slot=NOW, articles=tuple(articles[:n]))
        rendered = renderer.render(edition, campaign)
        if len(rendered.html.encode()) >= 65_000:
            break
    ctx = Context.open(root / "settings.toml", now=NOW)
    freeze(ctx, rendered)
    db = ctx.store.conn
    stamp = NOW.isoformat()
    with ctx.store.transaction():
        db.executemany("INSERT INTO subscribers (id, email, name, locale, created_at, updated_at) VALUES (?,?,?,?,?,?)",
                       ((i + 1, f"lecteur{i:06d}@example.org", f"Lecteur {i} Éloïse", "fr_FR", stamp, stamp) for i in range(count)))
        db.executemany("INSERT INTO subscriptions (subscriber_id, list) VALUES (?, 'wec')", ((i + 1,) for i in range(count)))
    ctx.close()
    from publisher.message import build
    template = build(rendered, campaign, settings, NOW)
    return {"articles": len(rendered.edition.articles), "html": len(rendered.html.encode()), "text": len(rendered.text.encode()),
            "rendered": rendered, "campaign": campaign, "settings": settings, "template": template}


# -- the three senders (children) -----------------------------------------------------------------------


def child_ours(root: str) -> None:
    from publisher.config import load_campaigns
    from publisher.pipeline import Context, dispatch, frozen
    from publisher.progress import Progress

    ctx = Context.open(Path(root) / "settings.toml", now=NOW)
    ctx.progress = Progress(quiet=True)
    campaign = load_campaigns(ctx.settings, ["endurance"])[0]
    rendered = frozen(ctx, campaign, EDITION)
    t = time.perf_counter()
    (report,) = dispatch(ctx, campaign, rendered, ["email"])
    elapsed = time.perf_counter() - t
    print(json.dumps({"sent": report.sent, "seconds": elapsed, "messages": report.messages}))


def child_replay(port: int, count: int, connections: int, eml: str) -> None:
    import smtplib

    data = Path(eml).read_bytes()
    per = [count // connections + (1 if i < count % connections else 0) for i in range(connections)]
    start = threading.Barrier(connections + 1)

    def work(k: int, n: int) -> None:
        smtp = smtplib.SMTP("127.0.0.1", port)
        start.wait()
        for i in range(n):
            smtp.sendmail(SENDER, [f"lecteur{k:02d}{i:06d}@example.org"], data)
        smtp.quit()

    threads = [threading.Thread(target=work, args=(k, n)) for k, n in enumerate(per)]
    for th in threads:
        th.start()
    start.wait()
    t = time.perf_counter()
    for th in threads:
        th.join()
    print(json.dumps({"sent": count, "seconds": time.perf_counter() - t}))


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
    proc = subprocess.Popen([args[0], "-c", _HWM_WRAPPER, *args[1:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, cwd=REPO)
    out_chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: out_chunks.append(proc.stdout.read()))
    reader.start()
    proc.wait()
    reader.join()
    wall = time.perf_counter() - t
    err = proc.stderr.read().decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"child {' '.join(args[:4])} failed ({proc.returncode}):\n{err[-3000:]}")
    out = b"".join(out_chunks).decode().strip().splitlines()
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
    from publisher.message import unsubscribe_link
    from publisher.tokens import Signer

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
            fh.write(f'{email},Lecteur {i} Éloïse,{unsubscribe_link(settings, signer.token(email))}\n')
    env = REPO / "bench" / ".env" / "bin" / "python"
    mailmerge_bin()
    return [str(env), "--entry", "mailmerge.__main__:main", "--no-dry-run", "--no-limit", "--output-format", "text",
            "--template", str(root / "mm_template.txt"), "--database", str(root / "mm_database.csv"),
            "--config", str(root / "mm_server.conf")]


# -- main ------------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=100_000, help="subscribers (default 100,000)")
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--mailmerge-count", type=int, default=2_000, help="rows mailmerge sends (0 = all)")
    p.add_argument("--skip-mailmerge", action="store_true")
    p.add_argument("--child", choices=["ours", "replay"], help=argparse.SUPPRESS)
    p.add_argument("--root", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--eml", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child == "ours":
        return child_ours(a.root)
    if a.child == "replay":
        return child_replay(a.port, a.count, a.connections, a.eml)

    root = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    try:
        with Sink() as sink:
            t = time.perf_counter()
            prep = prepare(root, sink.port, a.count, a.connections)
            sample_email = "lecteur000000@example.org"
            from publisher.message import Recipient, unsubscribe_link
            from publisher.tokens import Signer

            tpl = prep["template"]
            eml = tpl.personalise(Recipient(sample_email, "Lecteur 0 Éloïse",
                                            unsubscribe_link(prep["settings"], Signer(SECRET.encode()).token(sample_email)),
                                            tpl.message_id(sample_email)))
            (root / "one.eml").write_bytes(eml)
            print(f"prepared {a.count:,} subscribers and a digest of {prep['articles']} articles "
                  f"(HTML {prep['html'] / 1000:.1f} KB, text {prep['text'] / 1000:.1f} KB, message {len(eml) / 1000:.1f} KB)"
                  f" in {time.perf_counter() - t:.1f}s", file=sys.stderr)
            env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")} | {"PUBLISHER_UNSUBSCRIBE_SECRET": SECRET}
            rows = []

            sink.counter.value = 0
            info, wall, rss = _run_child([sys.executable, __file__, "--child", "ours", "--root", str(root)], env)
            assert info["sent"] == a.count == sink.counter.value, (info, sink.counter.value)
            rows.append(("ours (ledger incl.)", a.count, info["seconds"], rss))

            sink.counter.value = 0
            info, wall, rss = _run_child([sys.executable, __file__, "--child", "replay", "--port", str(sink.port),
                                          "--count", str(a.count), "--connections", str(a.connections), "--eml", str(root / "one.eml")])
            assert sink.counter.value == a.count, sink.counter.value
            rows.append(("smtplib replay", a.count, info["seconds"], rss))

            if not a.skip_mailmerge:
                n = a.count if a.mailmerge_count <= 0 else min(a.mailmerge_count, a.count)
                args = mailmerge_files(root, sink.port, n, prep)
                sink.counter.value = 0
                _, wall, rss = _run_child(args)
                assert sink.counter.value == n, sink.counter.value
                rows.append(("mailmerge " + _mm_version(), n, wall, rss))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    ours = rows[0][1] / rows[0][2]
    print(f"\nfan-out: one {len(eml) / 1000:.1f} KB message (digest of {prep['articles']} articles) per subscriber, "
          f"{a.connections} connections, loopback sink\n")
    print(f"{'sender':<22}{'messages':>10}{'seconds':>10}{'msgs/s':>10}{'peak RSS':>11}{'ours ÷ it':>11}")
    for name, n, secs, rss in rows:
        rate = n / secs
        print(f"{name:<22}{n:>10,}{secs:>10.2f}{rate:>10,.0f}{rss:>8.0f} MB{ours / rate:>10.2f}×")
    replay = rows[1][1] / rows[1][2]
    print(f"\ngoals: ours ≥ 0.8× replay: {ours / replay:.2f}× {'ok' if ours / replay >= 0.8 else 'MISSED'}; "
          f"peak RSS < 200 MB: {rows[0][3]:.0f} MB {'ok' if rows[0][3] < 200 else 'MISSED'}", end="")
    if len(rows) > 2:
        mm = rows[2][1] / rows[2][2]
        print(f"; ≥ 20× mailmerge: {ours / mm:.1f}× {'ok' if ours / mm >= 20 else 'MISSED'}")
    else:
        print()


def _mm_version() -> str:
    try:
        out = subprocess.run([str(mailmerge_bin()), "--version"], capture_output=True, text=True).stdout
        return out.split()[-1]
    except (OSError, IndexError):
        return ""


if __name__ == "__main__":
    main()
