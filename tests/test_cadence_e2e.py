"""A daily campaign through the real `publisher run` (as cron calls it) across the October DST change:
one edition per day, each sent once to every subscriber, through the ledger and the outbox."""

from __future__ import annotations

import email
import email.policy
import re
import sqlite3
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

PARIS = ZoneInfo("Europe/Paris")
UTC = timezone.utc
SECRET = {"PUBLISHER_UNSUBSCRIBE_SECRET": "cadence-unsubscribe-secret-0123456789"}
FIRST_DAY = datetime(2026, 10, 22, tzinfo=PARIS)


def _feed(now: datetime) -> str:
    """An RSS feed with one WEC article at 12:00 UTC on each day from 22 October, as published by `now`."""
    items = []
    for n in range(8):
        published = datetime(2026, 10, 22 + n, 12, 0, tzinfo=UTC)
        if published > now:
            break
        items.append(f"<item><title>WEC : la nouvelle du {22 + n} octobre</title>"
                     f"<link>https://www.endurance-info.com/2026/10/wec-{22 + n}/</link>"
                     f"<guid isPermaLink=\"false\">https://www.endurance-info.com/?p={1000 + n}</guid>"
                     f"<pubDate>{published:%a, %d %b %Y %H:%M:%S +0000}</pubDate><category>WEC</category>"
                     f"<description>Les nouvelles du jour en endurance, numéro {n}.</description></item>")
    return ('<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Endurance-Info</title>'
            f'<link>https://www.endurance-info.com</link><description>x</description>{"".join(items)}</channel></rss>')


def _only_campaign(project, name: str, toml: str, readers: tuple[str, ...], fetch_every: str = "1h") -> None:
    """The project with one campaign, the feed read from feed.xml, and these readers (WEC)."""
    for f in (project.root / "campaigns").glob("*.toml"):
        f.unlink()
    (project.root / "campaigns" / f"{name}.toml").write_text(toml, encoding="utf-8")
    text = re.sub(r"sources = \[[^\]]*\]", 'sources = ["feed.xml"]', project.settings.read_text(encoding="utf-8"))
    project.write_settings(text.replace('fetch_every = "1h"', f'fetch_every = "{fetch_every}"'))
    rows = "".join(f"{r}@example.org,{r.title()},wec,fr_FR\n" for r in readers)
    (project.root / "subs.csv").write_text("email,name,series,locale\n" + rows, encoding="utf-8")
    project.cli("subscribers", "import", "subs.csv", check=True)


@pytest.mark.slow
def test_a_daily_campaign_sends_one_edition_per_day_across_a_dst_change(project):
    _only_campaign(project, "quotidien", 'title = "Endurance Quotidien"\nseries = ["wec"]\nschedule = "daily 07:00"\n'
                   'channels = ["email"]\nmin_articles = 1\n', ("alice", "bob"))

    # cron every few hours from Friday 23 to Wednesday 28 October 2026; Sunday 25 is 25 hours long
    moments = []
    day = datetime(2026, 10, 23, tzinfo=PARIS)
    while day.date() <= datetime(2026, 10, 28).date():
        moments += [datetime.combine(day.date(), datetime.min.time(), PARIS).replace(hour=h, minute=m)
                    for h, m in ((6, 55), (7, 5), (13, 0), (23, 30))]
        day += timedelta(days=1)
    outbox = project.root / "var" / "outbox" / "quotidien"
    sent_at: dict[str, datetime] = {}
    skipped = []
    for now in moments:
        (project.root / "feed.xml").write_text(_feed(now), encoding="utf-8")
        proc = project.cli("--now", now.isoformat(), "run", env=SECRET)
        assert proc.returncode == 0, f"{now}: {proc.stdout}{proc.stderr}"
        skipped += re.findall(r"quotidien/(\S+): skipped \(thin week", proc.stdout)
        for folder in sorted(outbox.iterdir()) if outbox.exists() else ():
            sent_at.setdefault(folder.name, now)

    # 21 October had no article (the feed starts on the 22nd): recorded as skipped, not sent
    assert skipped == ["2026-10-21"]
    assert list(sent_at) == ["2026-10-22", "2026-10-23", "2026-10-24", "2026-10-25", "2026-10-26", "2026-10-27"]
    for eid, now in sent_at.items():
        # at the first wake-up after 07:00 local the next morning, summer or winter time
        assert now == datetime.fromisoformat(eid).replace(tzinfo=PARIS) + timedelta(days=1, hours=7, minutes=5)
    for eid in sent_at:
        files = sorted((outbox / eid / "email").glob("*.eml"))
        assert [f.name for f in files] == ["alice@example.org.eml", "bob@example.org.eml"]  # each once: one file each
        msg = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
        day = datetime.fromisoformat(eid).day
        body = msg.get_body(("plain",)).get_content()
        assert f"la nouvelle du {day} octobre" in body and "Aussi cette semaine".upper() not in body
        assert str(msg["Subject"]).startswith("Endurance Quotidien – ")
    with sqlite3.connect(project.root / "var" / "publisher.sqlite3") as db:
        rows = db.execute("SELECT edition_key, state, COUNT(*) FROM deliveries GROUP BY edition_key, state").fetchall()
    assert rows == [(f"quotidien/{eid}", "sent", 2) for eid in sent_at]  # one ledger row per reader and day
    status = project.cli("--now", moments[-1].isoformat(), "status", "quotidien", env=SECRET)
    assert status.returncode == 0, status.stdout + status.stderr


@pytest.mark.slow
def test_an_article_matching_the_alert_rules_goes_out_alone_at_once_and_once(project):
    _only_campaign(project, "endurance", 'title = "Endurance Hebdo"\nseries = ["wec"]\nschedule = "monday 08:00"\n'
                   'channels = ["email", "mastodon"]\n[alerts]\nkeywords = ["officiel"]\nchannels = ["email"]\n',
                   ("alice",), fetch_every="5m")

    def item(n: int, title: str, when: datetime) -> str:
        return (f"<item><title>{title}</title><link>https://www.endurance-info.com/2026/11/n{n}/</link>"
                f"<guid isPermaLink=\"false\">https://www.endurance-info.com/?p={n}</guid>"
                f"<pubDate>{when:%a, %d %b %Y %H:%M:%S +0000}</pubDate><category>WEC</category>"
                f"<description>Texte {n}.</description></item>")

    news = datetime(2026, 11, 18, 14, 2, tzinfo=UTC)  # a Wednesday: far from the weekly slot
    (project.root / "feed.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>E</title><link>https://e.org</link>'
        f'<description>x</description>{item(1, "WEC : c’est officiel, Alpine signe Schumacher", news)}'
        f'{item(2, "WEC : essais libres à Bahreïn", news - timedelta(hours=2))}</channel></rss>', encoding="utf-8")
    outbox = project.root / "var" / "outbox" / "endurance"
    runs = [news + timedelta(minutes=m) for m in (5, 10, 60)]
    outputs = [project.cli("--now", now.isoformat(), "run", env=SECRET) for now in runs]
    assert all(p.returncode == 0 for p in outputs), [p.stdout + p.stderr for p in outputs]
    sent = sorted(p.name for p in outbox.iterdir())
    assert len(sent) == 1 and sent[0].startswith("alert-20261118T1402-")  # only the article that matched
    assert f"send endurance/{sent[0]} on email: alert: published 2026-11-18 15:02 CET" in outputs[0].stdout
    assert "send endurance/" not in outputs[1].stdout + outputs[2].stdout  # once
    files = list((outbox / sent[0]).iterdir())
    assert [f.name for f in files] == ["email"]  # on the channels chosen: email, not mastodon
    msg = email.message_from_bytes((outbox / sent[0] / "email" / "alice@example.org.eml").read_bytes(),
                                   policy=email.policy.default)
    assert str(msg["Subject"]) == "WEC : c’est officiel, Alpine signe Schumacher"
    body = msg.get_body(("plain",)).get_content()
    assert "DERNIÈRE MINUTE" in body and "essais libres" not in body  # alone
    with sqlite3.connect(project.root / "var" / "publisher.sqlite3") as db:
        rows = db.execute("SELECT edition_key, channel, state FROM deliveries").fetchall()
    assert rows == [(f"endurance/{sent[0]}", "outbox:email", "sent")]
