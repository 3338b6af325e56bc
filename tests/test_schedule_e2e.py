"""End to end: the real `publisher run` on the embedded default, and the real `publisher schedule` process
against a local SMTP server and local X, Mastodon and Bluesky servers, stopped with SIGTERM mid-send and
restarted. What the servers received is counted: every recipient once, every post once.

The scheduler runs on the real clock (no --now): the campaign's slot is set to a minute that has just
passed, so the edition is due at the first wake-up; the feed holds articles of that edition's week.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from zoneinfo import ZoneInfo

import pytest

from publisher.config import Campaign
from publisher.editions import latest_slot_edition, window
from support.scheduler_process import Proc, query, wait_for
from support.smtp_servers import SmtpServer
from support.social_servers import CREDS, BlueskyServer, MastodonServer, XServer

PARIS = ZoneInfo("Europe/Paris")
SECRET = {"PUBLISHER_UNSUBSCRIBE_SECRET": "e2e-unsubscribe-secret-0123456789"}
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


# -- the embedded default ------------------------------------------------------------------------



@pytest.fixture
def project(any_project):
    """The scheduler end to end on both stores: SQLite, then PostgreSQL."""
    return any_project

def test_embedded_default_run_sends_due_editions_to_the_outbox_once(project):
    project.cli("subscribers", "import", "samples/subscribers.csv", check=True)
    first = project.cli("--now", "2026-11-23T09:00:00+01:00", "run", env=SECRET)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "fetch: no fetch recorded yet" in first.stdout
    assert "send endurance/2026-W47 on email, x, mastodon, bluesky" in first.stdout
    outbox = project.root / "var" / "outbox" / "endurance" / "2026-W47"
    emails = sorted(p.name for p in (outbox / "email").glob("*.eml"))
    assert emails, first.stdout
    posts = {n: sorted((outbox / n).glob("*.json")) for n in ("x", "mastodon", "bluesky")}
    assert all(posts.values())
    # the same wake-up again: nothing is due, nothing is written twice
    stamp = {p: p.stat().st_mtime_ns for p in outbox.rglob("*") if p.is_file()}
    again = project.cli("--now", "2026-11-23T09:05:00+01:00", "run", env=SECRET)
    assert again.returncode == 0 and "nothing due" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in outbox.rglob("*") if p.is_file()} == stamp
    status = project.cli("--now", "2026-11-23T09:05:00+01:00", "status", "endurance", check=True).stdout
    assert f"email (outbox:email) 2026-W47: sent {len(emails)}, pending 0, failed 0, unknown 0" in status
    assert "next run: 2026-W48 at 2026-11-30 08:00 CET" in status
    # a day and a half later the scheduler would have recorded next week's missed slot, not sent it
    late = project.cli("--now", "2026-12-01T20:00:00+01:00", "run", env=SECRET)
    assert "skip endurance/2026-W48: missed: slot was 2026-11-30 08:00 CET, lateness is 24h" in late.stdout
    assert not (project.root / "var" / "outbox" / "endurance" / "2026-W48").exists()


# -- the real scheduler process against local servers -------------------------------------------


def _rss(articles: list[tuple[str, str, datetime]]) -> str:
    items = "".join(
        f"<item><title>{title}</title><link>https://www.endurance-info.com/wec/{slug}.html</link>"
        f"<guid isPermaLink=\"false\">https://www.endurance-info.com/?p={slug}</guid>"
        f"<pubDate>{format_datetime(when.astimezone(timezone.utc))}</pubDate><category>WEC</category>"
        f"<description>&lt;p&gt;Compte rendu de {title}, avec les réactions des pilotes.&lt;/p&gt;</description></item>"
        for slug, title, when in articles)
    return ("<?xml version=\"1.0\" encoding=\"UTF-8\"?><rss version=\"2.0\"><channel><title>Endurance-Info</title>"
            f"<link>https://www.endurance-info.com</link><description>test</description>{items}</channel></rss>")


def setup_live(project, smtp: SmtpServer, x: XServer, masto: MastodonServer, bsky: BlueskyServer, *,
               subscribers: int, rate: float, thread_top: int) -> tuple[str, list[str]]:
    """One campaign due a minute ago on the real clock, live delivery to the local servers."""
    now = datetime.now(PARIS).replace(second=0, microsecond=0) - timedelta(minutes=1)
    schedule = f"{DAYS[now.weekday()]} {now:%H:%M}"
    probe = Campaign(name="endurance", title="t", series=("wec",), schedule=schedule)
    eid = latest_slot_edition(probe, datetime.now(timezone.utc))
    start, _ = window(eid, PARIS)
    feed = [(f"e2e-{i}", f"WEC : manche {i} à Bahreïn", start + timedelta(days=1, hours=i)) for i in range(6)]
    (project.root / "e2e-feed.xml").write_text(_rss(feed), encoding="utf-8")
    for f in (project.root / "campaigns").glob("*.toml"):
        if f.stem != "endurance":
            f.unlink()
    camp = project.root / "campaigns" / "endurance.toml"
    text = camp.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^schedule = .*$", f'schedule = "{schedule}"', text)
    text = re.sub(r"(?m)^thread_top = .*$", f"thread_top = {thread_top}", text)
    camp.write_text(text, encoding="utf-8")
    settings = project.settings.read_text(encoding="utf-8")
    settings = settings.replace('delivery = "outbox"', 'delivery = "live"')
    settings = re.sub(r"(?ms)^sources = \[.*?\]", 'sources = ["e2e-feed.xml"]', settings)
    settings = re.sub(r"(?ms)^\[smtp\]\n.*?(?=^\[)", smtp.settings_toml(connections=1, rate_per_second=rate) + "\n\n", settings)
    settings = re.sub(r"(?ms)^\[schedule\]\n.*?(?=^\[)", '[schedule]\nfetch_every = "1h"\nlateness = "24h"\ntick = "1s"\n\n', settings)
    settings += (f'\n[x]\napi_url = "{x.url}"\nupload_url = "{x.url}"\n'
                 f'\n[mastodon]\ninstance_url = "{masto.url}"\n'
                 f'\n[bluesky]\nservice_url = "{bsky.url}"\n')
    project.write_settings(settings)
    path = project.root / "subs.csv"
    addrs = [f"lecteur{i:04d}@example.org" for i in range(subscribers)]
    path.write_text("email,name,series,locale\n" + "".join(f"{a},Lecteur {i},wec,fr_FR\n" for i, a in enumerate(addrs)),
                    encoding="utf-8")
    project.cli("subscribers", "import", str(path), check=True)
    return f"endurance/{eid}", addrs


def open_rows(project, key: str) -> int:
    rows = query(project, "SELECT count(*) FROM deliveries WHERE edition_key=? AND state IN ('planned','sending')", (key,))
    return rows[0][0] if rows else -1


def finished_channels(project, key: str) -> set[str]:
    rows = query(project, "SELECT channel, outcome FROM runs WHERE edition_key=? ORDER BY started_at", (key,))
    last = {ch: outcome for ch, outcome in rows}
    return {ch for ch, outcome in last.items() if outcome == "ok"}


def run_stop_restart(project, subscribers: int, rate: float, thread_top: int, stop_after: int) -> None:
    env = {**CREDS, **SECRET}
    with SmtpServer() as smtp, XServer() as x, MastodonServer() as masto, BlueskyServer() as bsky:
        key, addrs = setup_live(project, smtp, x, masto, bsky, subscribers=subscribers, rate=rate, thread_top=thread_top)
        first = Proc(project, "schedule", env=env, name="first")
        try:
            wait_for(lambda: len(smtp.received) >= stop_after, timeout=90, what=f"{stop_after} messages", procs=(first,))
            assert first.terminate(timeout=60) == 0, first.stderr  # SIGTERM mid-send: a clean exit
        finally:
            first.kill()
        got_first = len(smtp.received)
        assert stop_after <= got_first < subscribers, "the send was not interrupted: raise subscribers or lower rate"
        assert "SIGTERM received" in first.stderr
        assert open_rows(project, key) == subscribers - got_first  # the rest is pending, none unknown
        assert query(project, "SELECT count(*) FROM deliveries WHERE edition_key=? AND state='unknown'", (key,)) == [(0,)]
        assert not x.tweets and not masto.statuses and not bsky.records  # the social channels come after email

        second = Proc(project, "schedule", env=env, name="second")
        try:
            wait_for(lambda: finished_channels(project, key) >= {"email", "x", "mastodon", "bluesky"}
                     and open_rows(project, key) == 0, timeout=120, what="every channel done", procs=(second,))
            assert second.terminate(timeout=60) == 0, second.stderr
        finally:
            second.kill()
        assert "resuming" in second.stderr

    # every recipient exactly once, nobody else
    counts = Counter(r.rcpt for r in smtp.received)
    assert set(counts) == set(addrs)
    assert max(counts.values()) == 1
    # every post exactly once: the lead post and the thread, on each network
    posts = 1 + thread_top
    assert len(x.tweets) == posts and len({t["text"] for t in x.tweets}) == posts
    assert len(masto.statuses) == posts and len({s["content"] for s in masto.statuses}) == posts
    assert len(bsky.records) == posts
    # and the thread is a chain: each post replies to the one before
    replies = [t.get("reply", {}).get("in_reply_to_tweet_id") for t in x.tweets]
    assert replies == [None] + [t["id"] for t in x.tweets[:-1]]


def test_schedule_stopped_mid_send_and_restarted_delivers_everything_once(project):
    run_stop_restart(project, subscribers=30, rate=10.0, thread_top=1, stop_after=5)


@pytest.mark.slow
def test_schedule_stopped_mid_send_and_restarted_delivers_everything_once_at_scale(project):
    run_stop_restart(project, subscribers=400, rate=40.0, thread_top=3, stop_after=120)
