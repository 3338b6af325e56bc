"""The due decision (scheduler/due.py) with an injected clock: DST weeks, restarts, missed slots, fetch timing.

Pure: campaigns and the store's facts are values; every `now` is a literal aware datetime.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from publisher.config import Campaign
from publisher.editions import edition_id_of, next_slot, slot, window
from publisher.scheduler.due import EditionState, candidate_editions, due

UTC = timezone.utc
PARIS = ZoneInfo("Europe/Paris")
DAY = timedelta(days=1)
LATE = timedelta(hours=24)
HOUR = timedelta(hours=1)


def campaign(name="endurance", schedule="monday 08:00", tz="Europe/Paris", channels=("email", "x")) -> Campaign:
    return Campaign(name=name, title=name.title(), series=("wec",), schedule=schedule, timezone=tz, channels=channels)


def sends(actions):
    return [(a.campaign, a.edition_id, a.channels) for a in actions if a.kind == "send"]


def simulate(campaigns, start, end, step, *, lateness=LATE, fetch_every=HOUR):
    """Run the decision at every step, applying its actions to the facts as the runner would."""
    states: dict[tuple[str, str], EditionState] = {}
    last_fetch = last_tick = None
    log: list[tuple[datetime, object]] = []
    now = start
    while now < end:
        for a in due(campaigns, now, states, lateness=lateness, fetch_every=fetch_every,
                     last_fetch=last_fetch, last_tick=last_tick):
            log.append((now, a))
            if a.kind == "fetch":
                last_fetch = now
            elif a.kind == "send":
                c = next(c for c in campaigns if c.name == a.campaign)
                states[(a.campaign, a.edition_id)] = EditionState("frozen", frozenset(c.channels))
            else:
                states[(a.campaign, a.edition_id)] = EditionState("skipped")
        last_tick = now
        now += step
    return log


@pytest.mark.parametrize("start,end,dst_week", [
    # last Sunday of October 2026 is the 25th: CEST -> CET at 03:00, week 43 lasts 169 hours
    (datetime(2026, 10, 5, 0, 0, tzinfo=UTC), datetime(2026, 11, 10, tzinfo=UTC), "2026-W43"),
    # last Sunday of March 2027 is the 28th: CET -> CEST at 02:00, week 12 lasts 167 hours
    (datetime(2027, 3, 1, 0, 0, tzinfo=UTC), datetime(2027, 4, 12, tzinfo=UTC), "2027-W12"),
])
def test_weekly_slot_in_paris_across_dst_goes_out_once_at_local_8am(start, end, dst_week):
    c = campaign()
    log = simulate([c], start, end, timedelta(minutes=10))
    sent = [(now, a) for now, a in log if a.kind == "send"]
    ids = [a.edition_id for _, a in sent]
    assert len(ids) == len(set(ids)) >= 5  # one send per edition, every week
    assert dst_week in ids
    for now, a in sent:
        local_slot = a.slot.astimezone(PARIS)
        assert (local_slot.weekday(), local_slot.hour, local_slot.minute) == (0, 8, 0)  # Monday 08:00 local
        assert a.slot <= now < a.slot + timedelta(minutes=10)  # at the first wake-up after the slot
        # the edition is the ISO week that just ended, in local time: never the wrong week
        assert edition_id_of(local_slot - timedelta(hours=9), PARIS) == a.edition_id
    # only the very first wake-up finds an old slot beyond lateness (the install); it is recorded, not sent
    assert [now for now, a in log if a.kind == "skip"] == [start]


def test_the_october_dst_week_is_169_hours_and_its_slot_is_0700_utc():
    start, end = window("2026-W43", PARIS)
    assert end.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=169)
    assert slot(campaign(), "2026-W43") == datetime(2026, 10, 26, 7, 0, tzinfo=UTC)
    assert slot(campaign(), "2026-W42") == datetime(2026, 10, 19, 6, 0, tzinfo=UTC)  # still summer time
    start, end = window("2027-W12", PARIS)
    assert end.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=167)


def test_an_hour_before_the_winter_slot_nothing_is_due():
    # 06:30 UTC on 26 Oct is 07:30 in Paris (CET): a summer-time offset would wrongly say 08:30
    c = campaign()
    done = {("endurance", "2026-W42"): EditionState("frozen", frozenset(c.channels))}
    early = due([c], datetime(2026, 10, 26, 6, 30, tzinfo=UTC), done, lateness=LATE, fetch_every=HOUR,
                last_fetch=datetime(2026, 10, 26, 6, 0, tzinfo=UTC))
    assert early == []
    on_time = due([c], datetime(2026, 10, 26, 7, 0, tzinfo=UTC), done, lateness=LATE, fetch_every=HOUR,
                  last_fetch=datetime(2026, 10, 26, 6, 0, tzinfo=UTC))
    assert sends(on_time) == [("endurance", "2026-W43", ("email", "x"))]


@pytest.mark.parametrize("start", [datetime(2026, 10, 18, tzinfo=UTC), datetime(2027, 3, 21, tzinfo=UTC)])
def test_a_slot_inside_the_dst_hour_still_goes_out_exactly_once(start):
    # "sunday 02:30" does not exist on the March change and happens twice on the October one
    c = campaign(schedule="sunday 02:30")
    log = simulate([c], start, start + timedelta(days=15), timedelta(minutes=5))
    sent = [(now, a) for now, a in log if a.kind == "send"]
    ids = [a.edition_id for _, a in sent]
    assert len(ids) == len(set(ids)) == 3  # three Sundays, the DST one among them, once each
    for now, a in sent:
        assert a.slot <= now < a.slot + timedelta(minutes=5)
        assert a.slot.astimezone(PARIS).weekday() == 6


def test_restart_right_after_a_slot_catches_up_once_and_not_twice():
    c = campaign()
    at = slot(c, "2026-W47")  # Monday 23 Nov 2026 08:00 CET
    assert at == datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
    before_restart = at - timedelta(minutes=1)  # the process was last awake just before the slot
    first = due([c], at + timedelta(minutes=3), {}, lateness=LATE, fetch_every=HOUR,
                last_fetch=at - timedelta(minutes=30), last_tick=before_restart)
    # a fetch first (the last one predates the slot), then the send on every channel
    assert [a.kind for a in first] == ["fetch", "send"]
    assert sends(first) == [("endurance", "2026-W47", ("email", "x"))]
    # killed after email went out; restarted: only the channel not done is resumed
    half = {("endurance", "2026-W47"): EditionState("frozen", frozenset({"email"}))}
    second = due([c], at + timedelta(minutes=6), half, lateness=LATE, fetch_every=HOUR,
                 last_fetch=at + timedelta(minutes=3), last_tick=at + timedelta(minutes=3))
    assert sends(second) == [("endurance", "2026-W47", ("x",))]
    assert "resuming" in second[0].reason
    done = {("endurance", "2026-W47"): EditionState("frozen", frozenset({"email", "x"}))}
    third = due([c], at + timedelta(minutes=9), done, lateness=LATE, fetch_every=HOUR,
                last_fetch=at + timedelta(minutes=3), last_tick=at + timedelta(minutes=6))
    assert third == []


def test_caught_up_inside_lateness_but_recorded_missed_beyond_it():
    c = campaign()
    at = slot(c, "2026-W47")
    late = due([c], at + timedelta(hours=23), {}, lateness=LATE, fetch_every=HOUR, last_fetch=None)
    assert sends(late) == [("endurance", "2026-W47", ("email", "x"))]
    assert "23h late" in late[1].reason
    missed = due([c], at + timedelta(hours=25), {}, lateness=LATE, fetch_every=HOUR,
                 last_fetch=at + timedelta(hours=24, minutes=30), lateness_text="24h")
    assert [(a.kind, a.edition_id) for a in missed] == [("skip", "2026-W47")]
    assert missed[0].reason == "missed: slot was 2026-11-23 08:00 CET, lateness is 24h"


def test_machine_off_for_weeks_records_every_missed_slot_once():
    c = campaign()
    off_since = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    now = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)  # W47's slot was 25 h ago
    actions = due([c], now, {}, lateness=LATE, fetch_every=HOUR, last_fetch=off_since, last_tick=off_since)
    assert [(a.kind, a.edition_id) for a in actions] == [
        ("fetch", ""), ("skip", "2026-W44"), ("skip", "2026-W45"), ("skip", "2026-W46"), ("skip", "2026-W47")]
    # recorded: the next wake-up has nothing left to record
    states = {("endurance", a.edition_id): EditionState("skipped") for a in actions if a.kind == "skip"}
    assert due([c], now + timedelta(minutes=1), states, lateness=LATE, fetch_every=HOUR, last_fetch=now,
               last_tick=now) == []


def test_first_ever_wake_up_only_looks_at_the_latest_slot():
    c = campaign()
    now = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # Wednesday: W47's slot is two days old
    assert candidate_editions(c, now, LATE, None) == ["2026-W47"]
    actions = due([c], now, {}, lateness=LATE, fetch_every=HOUR, last_fetch=now)
    assert [(a.kind, a.edition_id) for a in actions] == [("skip", "2026-W47")]


def test_thin_week_recorded_as_skipped_is_not_retried():
    c = campaign()
    at = slot(c, "2026-W47")
    states = {("endurance", "2026-W47"): EditionState("skipped")}
    assert due([c], at + HOUR, states, lateness=LATE, fetch_every=HOUR, last_fetch=at + HOUR) == []


def test_channels_waiting_for_a_retry_time_are_not_dispatched_until_then():
    c = campaign()
    at = slot(c, "2026-W47")
    states = {("endurance", "2026-W47"): EditionState("frozen", frozenset({"email"}), frozenset({"x"}))}
    assert due([c], at + HOUR, states, lateness=LATE, fetch_every=HOUR, last_fetch=at + HOUR) == []


def test_an_unfinished_edition_is_resumed_past_lateness_but_not_past_the_next_slot():
    c = campaign()
    at = slot(c, "2026-W47")
    half = {("endurance", "2026-W47"): EditionState("frozen", frozenset({"email"}))}
    # a long rate-limited send may run past the lateness window: it keeps going
    later = due([c], at + timedelta(days=2), half, lateness=LATE, fetch_every=HOUR, last_fetch=at + timedelta(days=2))
    assert sends(later) == [("endurance", "2026-W47", ("x",))]
    # a week later the next edition is due instead; the old one waits for the user (publisher status)
    week = due([c], at + timedelta(days=7, hours=1), half, lateness=LATE, fetch_every=HOUR,
               last_fetch=at + timedelta(days=7, hours=1))
    assert sends(week) == [("endurance", "2026-W48", ("email", "x"))]


def test_fetch_is_due_by_interval_and_before_any_fresh_edition():
    c = campaign()
    quiet = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    done = {("endurance", "2026-W47"): EditionState("frozen", frozenset(c.channels))}
    assert due([c], quiet, done, lateness=LATE, fetch_every=HOUR, last_fetch=quiet - timedelta(minutes=59)) == []
    [f] = due([c], quiet, done, lateness=LATE, fetch_every=HOUR, last_fetch=quiet - HOUR)
    assert f.kind == "fetch" and "every 1h" in f.reason
    [f] = due([c], quiet, done, lateness=LATE, fetch_every=HOUR, last_fetch=None)
    assert f.kind == "fetch"
    # a fresh edition is never rendered from a fetch made before its slot, whatever the interval
    at = slot(c, "2026-W48")
    acts = due([c], at + timedelta(minutes=1), {}, lateness=LATE, fetch_every=timedelta(hours=6),
               last_fetch=at - timedelta(minutes=20))
    assert [a.kind for a in acts] == ["fetch", "send"]
    acts = due([c], at + timedelta(minutes=2), {}, lateness=LATE, fetch_every=timedelta(hours=6),
               last_fetch=at + timedelta(minutes=1))
    assert [a.kind for a in acts] == ["send"]


def test_campaigns_in_other_time_zones_use_their_own_week_and_dst():
    # New York changes to winter time a week after Paris (1 Nov 2026)
    ny = campaign("imsa", schedule="monday 08:00", tz="America/New_York")
    assert slot(ny, "2026-W44") == datetime(2026, 11, 2, 13, 0, tzinfo=UTC)  # EST
    assert slot(ny, "2026-W43") == datetime(2026, 10, 26, 12, 0, tzinfo=UTC)  # still EDT
    log = simulate([ny, campaign()], datetime(2026, 10, 12, tzinfo=UTC), datetime(2026, 11, 12, tzinfo=UTC),
                   timedelta(minutes=15))
    per = {}
    for _, a in log:
        if a.kind == "send":
            per.setdefault(a.campaign, []).append(a.edition_id)
    assert per["imsa"] == per["endurance"] == ["2026-W41", "2026-W42", "2026-W43", "2026-W44", "2026-W45"]
    imsa_sent = [(now, a.slot) for now, a in log if a.kind == "send" and a.campaign == "imsa"]
    assert all(s <= now < s + timedelta(minutes=15) for now, s in imsa_sent)


def test_next_slot_and_action_lines_name_the_edition():
    c = campaign()
    eid, at = next_slot(c, datetime(2026, 11, 23, 7, 0, tzinfo=UTC))
    assert (eid, at) == ("2026-W48", datetime(2026, 11, 30, 7, 0, tzinfo=UTC))
    [a] = sends_actions = [x for x in due([c], datetime(2026, 11, 23, 7, 0, tzinfo=UTC), {}, lateness=LATE,
                                          fetch_every=HOUR, last_fetch=datetime(2026, 11, 23, 7, 0, tzinfo=UTC))]
    assert sends_actions[0].line() == "send endurance/2026-W47 on email, x: slot 2026-11-23 08:00 CET"


# -- daily and monthly cadences ------------------------------------------------------------------------


@pytest.mark.parametrize("start,end,dst_day,hours", [
    # Sunday 25 October 2026, CEST -> CET at 03:00: that day lasts 25 hours
    (datetime(2026, 10, 20, 0, 0, tzinfo=UTC), datetime(2026, 10, 31, tzinfo=UTC), "2026-10-25", 25),
    # Sunday 28 March 2027, CET -> CEST at 02:00: that day lasts 23 hours
    (datetime(2027, 3, 23, 0, 0, tzinfo=UTC), datetime(2027, 4, 3, tzinfo=UTC), "2027-03-28", 23),
])
def test_daily_slot_in_paris_across_dst_goes_out_once_a_day_at_local_7am(start, end, dst_day, hours):
    c = campaign(schedule="daily 07:00")
    log = simulate([c], start, end, timedelta(minutes=10))
    sent = [(now, a) for now, a in log if a.kind == "send"]
    ids = [a.edition_id for _, a in sent]
    assert len(ids) == len(set(ids))  # never twice
    first, last = datetime.fromisoformat(ids[0]).date(), datetime.fromisoformat(ids[-1]).date()
    assert ids == [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]  # every day
    assert len(ids) >= 9 and dst_day in ids
    assert sent[0][0] == start  # the install finds yesterday's slot inside lateness and sends it late, once
    for now, a in sent:
        local_slot = a.slot.astimezone(PARIS)
        assert (local_slot.hour, local_slot.minute) == (7, 0)
        assert a.slot <= now < a.slot + timedelta(minutes=10) or now == start
        # the edition is the local day that just ended
        assert edition_id_of(local_slot - timedelta(hours=8), PARIS, "daily") == a.edition_id
    day_start, day_end = window(dst_day, PARIS)
    assert day_end.astimezone(UTC) - day_start.astimezone(UTC) == timedelta(hours=hours)
    assert [a for _, a in log if a.kind == "skip"] == []  # no day missed


def test_the_daily_slots_around_the_october_change_in_utc():
    c = campaign(schedule="daily 07:00")
    assert slot(c, "2026-10-23") == datetime(2026, 10, 24, 5, 0, tzinfo=UTC)  # 07:00 summer time
    assert slot(c, "2026-10-24") == datetime(2026, 10, 25, 6, 0, tzinfo=UTC)  # 07:00 winter time, 4 h after the change
    assert next_slot(c, datetime(2026, 10, 25, 6, 30, tzinfo=UTC)) == ("2026-10-25", datetime(2026, 10, 26, 6, 0, tzinfo=UTC))


def test_monthly_slot_goes_out_once_a_month_on_its_day_across_dst():
    c = campaign(schedule="monthly 1 09:00")
    log = simulate([c], datetime(2026, 8, 20, tzinfo=UTC), datetime(2027, 5, 3, tzinfo=UTC), timedelta(hours=1))
    sent = [(now, a) for now, a in log if a.kind == "send"]
    assert [a.edition_id for _, a in sent] == ["2026-08", "2026-09", "2026-10", "2026-11", "2026-12", "2027-01",
                                               "2027-02", "2027-03", "2027-04"]
    for now, a in sent:
        local = a.slot.astimezone(PARIS)
        assert (local.day, local.hour, local.minute) == (1, 9, 0) and a.slot <= now < a.slot + HOUR
    assert window("2026-10", PARIS) == (datetime(2026, 10, 1, tzinfo=PARIS), datetime(2026, 11, 1, tzinfo=PARIS))
    assert window("2026-12", PARIS)[1] == datetime(2027, 1, 1, tzinfo=PARIS)
    assert slot(campaign(schedule="monthly 15 09:00"), "2026-11") == datetime(2026, 12, 15, 9, 0, tzinfo=PARIS)


# -- per-article alerts --------------------------------------------------------------------------------


def test_an_alert_goes_out_at_once_on_its_channels_once_and_a_stale_one_is_recorded_as_missed():
    from publisher.config import AlertSettings

    c = Campaign(name="endurance", title="Endurance", series=("wec",), channels=("email", "x"),
                 alerts=AlertSettings(keywords=("officiel",), channels=("email",)))
    published = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # during the October change night
    eid = "alert-20261025T0130-1a2b3c4d"
    now = published + timedelta(minutes=4)
    kwargs = dict(lateness=LATE, fetch_every=HOUR, last_fetch=now)
    alerts = {"endurance": [(eid, published)]}
    first = [a for a in due([c], now, {}, alerts=alerts, **kwargs) if a.edition_id == eid]
    assert [(a.kind, a.channels, a.slot) for a in first] == [("send", ("email",), published)]
    assert first[0].reason == "alert: published 2026-10-25 02:30 CET"  # local time, after the change
    done = {("endurance", eid): EditionState("frozen", frozenset({"email"}))}
    assert [a for a in due([c], now + HOUR, done, alerts=alerts, **kwargs) if a.edition_id == eid] == []
    half = {("endurance", eid): EditionState("frozen")}
    assert [a.reason.split(" (")[0] for a in due([c], now + HOUR, half, alerts=alerts, **kwargs)
            if a.edition_id == eid] == ["resuming alert"]
    late = [a for a in due([c], published + LATE + HOUR, {}, alerts=alerts, **kwargs) if a.edition_id == eid]
    assert [(a.kind, a.reason) for a in late] == [("skip", "missed: alert published 2026-10-25 02:30 CET, lateness is 1d")]
