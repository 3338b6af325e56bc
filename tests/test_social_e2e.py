"""Done-when of the social networks: a campaign with all eight networks posts an edition to local
servers once and only once, through a `kill -9` of a real `publisher send` in the middle of a thread
and a rerun."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from support.social_servers import (
    CREDS,
    BlueskyServer,
    FacebookServer,
    Hang,
    InstagramServer,
    LinkedInServer,
    MastodonServer,
    Normal,
    TelegramServer,
    ThreadsServer,
    XServer,
    live_tables,
)

NOW = "2026-11-23T08:30:00+01:00"
NETWORKS = ("x", "mastodon", "bluesky", "facebook", "instagram", "threads", "linkedin", "telegram")
PUBLISH = "/v1.0/me/threads_publish"


@pytest.fixture
def servers():
    with XServer() as xs, MastodonServer() as ms, BlueskyServer() as bs, FacebookServer() as fb, \
            InstagramServer() as ig, ThreadsServer() as th, LinkedInServer() as li, TelegramServer() as tg:
        yield dict(zip(NETWORKS, (xs, ms, bs, fb, ig, th, li, tg)))


def toml_table(name: str, table: dict) -> str:
    lines = [f"[{name}]"]
    for k, v in table.items():
        lines.append(f"{k} = {str(v).lower() if isinstance(v, bool) else repr(v) if isinstance(v, str) else v}")
    return "\n".join(lines).replace("'", '"')


def live_project(project, servers) -> None:
    settings = project.settings.read_text(encoding="utf-8").replace('delivery = "outbox"', 'delivery = "live"')
    tables = live_tables(servers)
    tables["threads"]["timeout"] = 60  # the hung publish must still be waiting when the test kills the process
    project.write_settings(settings + "\n" + "\n\n".join(toml_table(n, t) for n, t in tables.items()) + "\n")
    campaign = project.root / "campaigns" / "endurance.toml"
    text = campaign.read_text(encoding="utf-8")
    campaign.write_text(re.sub(r"(?m)^channels = .*$", f"channels = {list(('email', *NETWORKS))!r}".replace("'", '"'),
                               text), encoding="utf-8")
    project.cli("fetch", check=True)


def send_args(project) -> list[str]:
    args = [sys.executable, "-m", "publisher", "--settings", str(project.settings), "--now", NOW, "send", "endurance"]
    for n in NETWORKS:
        args += ["--channel", n]
    return args


def env(project) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")} | project.env | CREDS


def posted(servers) -> dict[str, list[str]]:
    """What each network shows now: the text (or caption, commentary, message) of every post made."""
    s = servers
    return {
        "x": [t["text"] for t in s["x"].tweets],
        "mastodon": [st["content"] for st in s["mastodon"].statuses],
        "bluesky": [r["value"]["text"] for r in s["bluesky"].records.values()],
        "facebook": [p["message"] for p in s["facebook"].posts],
        "instagram": [m["caption"] for m in s["instagram"].published],
        "threads": [p["text"] for p in s["threads"].published],
        "linkedin": [p["commentary"] for p in s["linkedin"].posts],
        "telegram": [m["visible"] for m in s["telegram"].messages],
    }


@pytest.fixture
def project(any_project):
    """The kill -9 of a thread on both stores: SQLite, then PostgreSQL."""
    return any_project


@pytest.mark.slow
def test_eight_networks_post_once_and_only_once_through_a_kill_in_a_thread(project, servers):
    live_project(project, servers)
    th = servers["threads"]
    # Threads makes the second post of its thread, then the reply never comes: kill -9 right then
    th.script("POST", PUBLISH, Normal(), Hang(commit=True))
    proc = subprocess.Popen(send_args(project), cwd=project.root, env=env(project), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and len(th.to("POST", PUBLISH)) < 2:
        time.sleep(0.01)
    assert proc.poll() is None, "the send ended before the kill: " + "".join(proc.communicate())
    proc.kill()
    proc.communicate()
    before = posted(servers)
    # the networks before Threads are done, Threads has its lead post and the reply on the wire, the
    # networks after it have nothing yet
    assert all(before[n] for n in NETWORKS[:5])
    assert len(before["threads"]) == 2 and before["linkedin"] == [] and before["telegram"] == []

    rerun = subprocess.run(send_args(project), cwd=project.root, env=env(project), capture_output=True, text=True, timeout=300)
    out = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, out
    after = posted(servers)
    for network in NETWORKS:
        assert after[network], f"{network}: nothing posted\n{out}"
        assert len(after[network]) == len(set(after[network])), f"{network} posted something twice: {after[network]}"
        assert after[network][: len(before[network])] == before[network]  # what was there stays, nothing redone
    for network in NETWORKS[:5]:
        n = len(after[network])
        assert after[network] == before[network] and f"{network} endurance/2026-W47: 0 sent, {n} already sent" in out, out
    # Threads: the post on the wire at the kill is read back and reported as found, the chain goes on from it
    n_threads = len(after["threads"])
    assert n_threads == 4  # the lead post and a thread of thread_top = 3
    assert "threads endurance/2026-W47: 2 sent, 1 found already posted, 1 already sent" in out, out
    published = th.published
    assert [p["reply_to_id"] for p in published] == [None] + [p["id"] for p in published[:-1]]
    # a thread on the page networks is the lead post alone; Instagram's is one carousel; Telegram's a reply chain
    assert len(after["facebook"]) == len(after["linkedin"]) == len(after["instagram"]) == 1
    assert len(servers["instagram"].published[0]["children"]) >= 2
    assert [m["reply_to"] for m in servers["telegram"].messages][1:] == [m["message_id"] for m in servers["telegram"].messages][:-1]
    assert len(after["x"]) == len(after["mastodon"]) == len(after["bluesky"]) == len(after["telegram"]) == 4

    again = subprocess.run(send_args(project), cwd=project.root, env=env(project), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert posted(servers) == after
    for network in NETWORKS:
        assert f"{network} endurance/2026-W47: 0 sent, {len(after[network])} already sent" in again.stdout, again.stdout
    for secret in CREDS.values():
        if secret != CREDS["PUBLISHER_BLUESKY_HANDLE"]:
            assert secret not in out + again.stdout + again.stderr
