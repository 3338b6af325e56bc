"""The scheduler's runner against a real SQLite store, with an injected clock and injected jobs.

The jobs (fetch, send) are swapped for recorders that write the store the way the pipeline does, so
these tests check the scheduling (once per slot, restarts, failures, backoff) without mail or APIs.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from datetime import datetime, timedelta, timezone

import pytest

from publisher.app import Context, load_settings
from publisher.channels import DispatchReport
from publisher.config import Campaign, ScheduleSettings
from publisher.editions import slot
from publisher.models import State
from publisher.scheduler.facts import decide, edition_state
from publisher.scheduler.runner import Jobs, Runner, loop

UTC = timezone.utc


def campaign(name: str, schedule: str = "monday 08:00", channels=("email", "x")) -> Campaign:
    return Campaign(name=name, title=name.title(), series=("wec",), schedule=schedule, timezone="Europe/Paris",
                    channels=channels)


ENDURANCE = campaign("endurance")
GT = campaign("gt", "monday 09:00")
SLOT = slot(ENDURANCE, "2026-W47")  # Monday 23 Nov 2026, 08:00 CET = 07:00 UTC


class Recorder:
    """Fake jobs: record each call and leave the store as a real fetch or dispatch would."""

    def __init__(self) -> None:
        self.fetches: list[datetime] = []
        self.sends: list[tuple[str, str, tuple[str, ...], datetime]] = []
        self.fail_fetch = 0  # raise on the next N fetches
        self.fail_send: dict[str, int] = {}  # campaign -> raise on the next N sends

    def fetch(self, ctx: Context) -> list:
        self.fetches.append(ctx.now)
        if self.fail_fetch:
            self.fail_fetch -= 1
            raise RuntimeError("feed server on fire")
        return []

    def send(self, ctx: Context, c: Campaign, eid: str, channels) -> list[DispatchReport]:
        self.sends.append((c.name, eid, tuple(channels), ctx.now))
        if self.fail_send.get(c.name):
            self.fail_send[c.name] -= 1
            raise ConnectionError("smtp relay unreachable")
        ctx.store.freeze_edition(c.name, eid, "hash", "{}", ctx.now)
        key = f"{c.name}/{eid}"
        for ch in channels:
            run = ctx.store.start_run(key, ch, ctx.now)
            ctx.store.finish_run(run, ctx.now, 0.01, "ok", f"{ch} {key}: 1 sent")
        return [DispatchReport(channel=ch, edition_key=key, sent=1) for ch in channels]

    def jobs(self) -> Jobs:
        return Jobs(fetch=self.fetch, send=self.send)


@pytest.fixture
def ctx(project):
    settings = load_settings(project.settings)
    c = Context(settings=settings, now=SLOT)
    yield c
    c.close()


def runner(ctx, rec, campaigns=(ENDURANCE, GT)) -> Runner:
    return Runner(ctx, list(campaigns), jobs=rec.jobs(), emit=lambda line: None)


def test_restart_right_after_a_slot_sends_once_not_twice(ctx):
    rec = Recorder()
    r1 = runner(ctx, rec)
    r1.wake(SLOT - timedelta(minutes=1))  # before the slot: fetch only
    assert rec.sends == [] and len(rec.fetches) == 1
    r1.wake(SLOT + timedelta(minutes=1))
    assert [(n, e, ch) for n, e, ch, _ in rec.sends] == [("endurance", "2026-W47", ("email", "x"))]
    assert len(rec.fetches) == 2  # fetched again: the first fetch predates the slot
    # the process is restarted: a new runner, same store
    r2 = runner(ctx, rec)
    r2.wake(SLOT + timedelta(minutes=2))
    r2.wake(SLOT + timedelta(hours=3))
    assert [(n, e) for n, e, _, _ in rec.sends] == [("endurance", "2026-W47"), ("gt", "2026-W47")]
    assert edition_state(ctx.store, ENDURANCE, "2026-W47", SLOT + timedelta(hours=3)).done_channels == {"email", "x"}


def test_a_job_that_raises_is_logged_and_retried_at_the_next_wake_up(ctx, caplog):
    rec = Recorder()
    rec.fail_fetch = 1
    rec.fail_send = {"endurance": 1}
    r = runner(ctx, rec)
    at = slot(GT, "2026-W47") + timedelta(minutes=1)  # both campaigns due
    with caplog.at_level(logging.ERROR, logger="publisher"):
        first = r.wake(at)
    assert [e.split(":")[0] for e in first.errors] == ["fetch", "endurance/2026-W47"]
    assert "RuntimeError: feed server on fire" in caplog.text and "ConnectionError: smtp relay unreachable" in caplog.text
    assert "retrying at the next wake-up" in caplog.text
    # the other campaign went out in the same wake-up
    assert [(n, e) for n, e, _, _ in rec.sends] == [("endurance", "2026-W47"), ("gt", "2026-W47")]
    second = r.wake(at + timedelta(minutes=1))
    assert second.errors == []
    assert len(rec.fetches) == 2
    assert [(n, e) for n, e, _, _ in rec.sends][-1] == ("endurance", "2026-W47")
    assert ctx.store.edition_record("endurance", "2026-W47").status == "frozen"
    assert r.wake(at + timedelta(minutes=2)).actions == []


def test_a_job_that_keeps_failing_backs_off_without_stopping_the_others(ctx):
    rec = Recorder()
    rec.fail_send = {"endurance": 100}
    r = runner(ctx, rec)
    tick = r.tick  # 60 s by default
    attempts = []
    start = SLOT + timedelta(minutes=1)
    for i in range(10):
        before = len(rec.sends)
        r.wake(start + i * tick)
        attempts += [i + 1 for s in rec.sends[before:] if s[0] == "endurance"]
    assert attempts == [1, 2, 4, 8]  # next wake-up, then 1, 3 wake-ups skipped: never a hot loop


def test_a_week_with_no_articles_is_skipped_and_recorded(ctx):
    rec = Recorder()
    # the real send job: plan finds no article in the window, records the skip, renders nothing
    r = Runner(ctx, [ENDURANCE], jobs=Jobs(fetch=rec.fetch), emit=lambda line: None)
    result = r.wake(SLOT + timedelta(minutes=1))
    assert [a.kind for a in result.actions] == ["fetch", "send"]
    row = ctx.store.edition_record("endurance", "2026-W47")
    assert row.status == "skipped"
    assert row.reason.startswith("thin week: 0 article(s)")
    assert r.wake(SLOT + timedelta(minutes=2)).actions == []


def test_a_slot_missed_beyond_lateness_is_recorded_with_the_reason(ctx):
    rec = Recorder()
    r = runner(ctx, rec, [ENDURANCE])
    r.wake(SLOT + timedelta(hours=30))
    assert rec.sends == []
    row = ctx.store.edition_record("endurance", "2026-W47")
    assert (row.status, row.reason) == ("skipped", "missed: slot was 2026-11-23 08:00 CET, lateness is 24h")


def test_an_interrupted_channel_is_resumed_and_a_finished_one_is_not(ctx):
    key = "endurance/2026-W47"
    ctx.store.freeze_edition("endurance", "2026-W47", "hash", "{}", SLOT)
    run = ctx.store.start_run(key, "email", SLOT)
    ctx.store.finish_run(run, SLOT, 3.0, "ok", "email: 2 sent")
    run = ctx.store.start_run(key, "x", SLOT)
    ctx.store.finish_run(run, SLOT, 0.5, "stopped", "x: 1 sent, 2 pending")
    ctx.ledger().plan(key, "x", ["post:0", "post:1", "post:2"])
    ctx.ledger().finish(key, "x", [("post:0", State.SENT, "1", None)])
    actions = decide(ctx, [ENDURANCE], SLOT + timedelta(minutes=5))
    assert [(a.kind, a.channels) for a in actions if a.kind == "send"] == [("send", ("x",))]
    # rows held back by a retry time (429 reset) make the channel wait instead of spinning
    ctx.ledger().retry_later(key, "x", [("post:1", SLOT + timedelta(hours=1), "429"),
                                        ("post:2", SLOT + timedelta(hours=1), "429")])
    assert [a for a in decide(ctx, [ENDURANCE], SLOT + timedelta(minutes=6)) if a.kind == "send"] == []
    assert [a.channels for a in decide(ctx, [ENDURANCE], SLOT + timedelta(hours=1, minutes=1))
            if a.kind == "send"] == [("x",)]


def test_the_loop_survives_failing_wake_ups_and_stops_on_request(ctx, caplog):
    ctx.settings = dataclasses.replace(ctx.settings, schedule=ScheduleSettings(tick="0.05s", fetch_every="1s"))
    broken = campaign("broken", schedule="someday 25:00")  # makes the decision itself raise
    rec = Recorder()
    r = Runner(ctx, [broken], jobs=rec.jobs(), emit=lambda line: None)
    times = iter(SLOT + timedelta(minutes=i) for i in range(1000))
    calls = []

    def clock():
        calls.append(1)
        if len(calls) == 4:
            ctx.stop.set()
        return next(times)

    with caplog.at_level(logging.ERROR, logger="publisher"):
        wakes = loop(r, ctx.stop, clock)
    assert wakes == 4
    assert caplog.text.count("trying again at the next wake-up") == 4
    assert "someday 25:00" in caplog.text


def test_a_stop_request_leaves_the_rest_for_the_next_run(ctx):
    rec = Recorder()
    r = runner(ctx, rec)
    ctx.stop.set()
    result = r.wake(slot(GT, "2026-W47") + timedelta(minutes=1))
    assert result.stopped and result.actions == [] and rec.sends == []
    ctx.stop = threading.Event()
    assert len(r.wake(slot(GT, "2026-W47") + timedelta(minutes=2)).actions) == 3  # fetch, endurance, gt


def test_dispatch_runs_under_a_fixed_clock_are_all_kept_in_order(ctx):
    for outcome in ("stopped", "error: relay down", "ok"):
        run = ctx.store.start_run("endurance/2026-W47", "email", SLOT)  # the same --now every time
        ctx.store.finish_run(run, SLOT, 1.5, outcome)
    runs = ctx.store.runs("endurance/2026-W47", "email")
    assert [r.outcome for r in runs] == ["stopped", "error: relay down", "ok"]
    assert sum(r.seconds for r in runs) == 4.5
    assert edition_state(ctx.store, ENDURANCE, "2026-W47", SLOT).status is None  # runs alone do not make an edition
