"""Pure planning: series matching, ISO-week windows in the campaign's zone, slots, thin weeks."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from publisher.config import Campaign, SeriesSettings
from publisher.editions import (
    current_edition,
    edition_id_of,
    latest_slot_edition,
    next_slot,
    parse_edition_id,
    plan_edition,
    series_of,
    slot,
    window,
)
from publisher.errors import ConfigError
from publisher.models import Article

PARIS = ZoneInfo("Europe/Paris")
UTC = timezone.utc

SERIES = {
    "wec": SeriesSettings(label="WEC", categories=("WEC", "FIA WEC"), keywords=("WEC",)),
    "le-mans": SeriesSettings(label="24 Heures du Mans", categories=("Le Mans",), keywords=("Le Mans",),
                              exclude=("Petit Le Mans", "Asian Le Mans", "European Le Mans")),
    "imsa": SeriesSettings(label="IMSA", categories=("IMSA",), keywords=("WeatherTech",)),
    "rallycross-france": SeriesSettings(label="Rallycross France", title_prefixes=("Rallycross France",),
                                        aliases=("Championnat de France de Rallycross",)),
}


def art(i: int, title: str, when: datetime, categories=(), image=None) -> Article:
    return Article(id=f"id-{i}", link=f"https://www.endurance-info.com/a/{i}", title=title, summary="…",
                   published=when.astimezone(UTC), categories=tuple(categories), image=image)


def campaign(**kw) -> Campaign:
    base = dict(name="endurance", title="Endurance Hebdo", series=("wec", "le-mans"), source="campaigns/endurance.toml")
    base.update(kw)
    return Campaign(**base)


def test_series_from_categories_prefixes_and_keywords():
    t = datetime(2026, 11, 18, 12, tzinfo=PARIS)
    assert series_of(art(1, "Toyota en tête", t, ["fia wec"]), SERIES) == ("wec",)
    assert series_of(art(2, "Rallycross France : Pailler s'impose", t), SERIES) == ("rallycross-france",)
    assert series_of(art(3, "Rallycross France (Lessay): le live", t), SERIES) == ("rallycross-france",)
    # a prefix must be a prefix: the same words later in a title are not a match
    assert series_of(art(4, "Le point sur le Rallycross France", t), SERIES) == ()
    # keywords match whole words, accents and case folded
    assert series_of(art(5, "Valentino Rossi : “Spa et LE MANS figurent sur ma liste”", t), SERIES) == ("le-mans",)
    assert series_of(art(6, "CTMP : victoire au WeatherTech", t, ["IMSA"]), SERIES) == ("imsa",)
    assert series_of(art(7, "Le Mans et le WEC", t), SERIES) == ("wec", "le-mans")
    # other races named after Le Mans are not the 24 Hours
    assert series_of(art(8, "Matthieu Lahaye : “L’Asian Le Mans Series est un pas de plus”", t), SERIES) == ()
    assert series_of(art(9, "Petit Le Mans : Cadillac en pole", t), SERIES) == ()


def test_iso_week_window_in_campaign_zone():
    start, end = window("2026-W47", PARIS)
    assert start == datetime(2026, 11, 16, 0, 0, tzinfo=PARIS)
    assert end == datetime(2026, 11, 23, 0, 0, tzinfo=PARIS)
    # Sunday 23:30 in Paris is Sunday 22:30 UTC: still week 47 for a Paris campaign
    assert edition_id_of(datetime(2026, 11, 22, 22, 30, tzinfo=UTC), PARIS) == "2026-W47"
    assert edition_id_of(datetime(2026, 11, 22, 23, 30, tzinfo=UTC), PARIS) == "2026-W48"


def test_year_boundary_and_bad_ids():
    assert window("2026-W53", PARIS)[0] == datetime(2026, 12, 28, tzinfo=PARIS)
    with pytest.raises(ConfigError, match="2025 has no week 53"):
        parse_edition_id("2025-W53")
    with pytest.raises(ConfigError, match="is not an ISO week like 2026-W47"):
        parse_edition_id("2026-47")


def test_slot_follows_window_end_even_across_dst():
    c = campaign(schedule="monday 08:00")
    assert slot(c, "2026-W47") == datetime(2026, 11, 23, 8, 0, tzinfo=PARIS)
    # the week of the October change (Sunday 25 Oct 2026) is 169 hours long; the slot stays 08:00 local
    start, end = window("2026-W43", PARIS)
    assert end.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=169)
    assert slot(c, "2026-W43").utcoffset() == timedelta(hours=1)
    assert slot(c, "2026-W43") == datetime(2026, 10, 26, 8, 0, tzinfo=PARIS)
    # March change (Sunday 29 Mar 2026): 167 hours, slot at 08:00 CEST
    start, end = window("2026-W13", PARIS)
    assert end.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=167)
    assert slot(c, "2026-W13").utcoffset() == timedelta(hours=2)
    # a Tuesday schedule puts week 47's slot on Tuesday 24 Nov
    assert slot(campaign(schedule="tuesday 07:30"), "2026-W47") == datetime(2026, 11, 24, 7, 30, tzinfo=PARIS)


def test_latest_next_and_current_edition():
    c = campaign(schedule="monday 08:00")
    before = datetime(2026, 11, 23, 7, 59, tzinfo=PARIS)
    after = datetime(2026, 11, 23, 8, 0, tzinfo=PARIS)
    assert latest_slot_edition(c, before) == "2026-W46"
    assert latest_slot_edition(c, after) == "2026-W47"
    assert next_slot(c, before) == ("2026-W47", datetime(2026, 11, 23, 8, 0, tzinfo=PARIS))
    assert current_edition(c, datetime(2026, 11, 22, 12, tzinfo=PARIS), timedelta(hours=24)) == "2026-W47"
    assert current_edition(c, datetime(2026, 11, 24, 7, tzinfo=PARIS), timedelta(hours=24)) == "2026-W47"
    assert current_edition(c, datetime(2026, 11, 24, 9, tzinfo=PARIS), timedelta(hours=24)) == "2026-W48"


def test_plan_orders_picks_lead_and_limits():
    c = campaign(max_articles=3, min_articles=1)
    d = lambda day, h=12: datetime(2026, 11, day, h, tzinfo=PARIS)  # noqa: E731
    articles = [
        art(1, "Toyota domine à Bahreïn", d(16), ["WEC"]),
        art(2, "Le Mans : la liste des engagés", d(18), ["Le Mans"], image="https://x.example/a.jpg"),
        art(3, "WEC : bilan de la saison", d(20), ["WEC"]),
        art(4, "IMSA : Petit Le Mans", d(21), ["IMSA"]),  # "Petit Le Mans" is excluded from the le-mans keyword
        art(5, "WEC : rookie test", d(22, 23), ["WEC"]),  # Sunday 23:00 Paris: still week 47
        art(6, "WEC : prologue", d(23, 1), ["WEC"]),  # Monday: next week
        art(7, "WEC : hier", d(15), ["WEC"]),  # previous week
    ]
    plan = plan_edition(c, "2026-W47", articles, SERIES)
    assert plan.skip_reason is None
    ids = [a.id for a in plan.edition.articles]
    # the newest article with an image leads, the rest newest first, cut at max_articles
    assert ids == ["id-2", "id-5", "id-3"]
    assert plan.edition.series["id-2"] == ("le-mans",)
    assert plan.edition.key == "endurance/2026-W47"


def test_thin_week_policy():
    d = datetime(2026, 11, 18, 12, tzinfo=PARIS)
    one = [art(1, "WEC : une seule nouvelle", d, ["WEC"])]
    skip = plan_edition(campaign(min_articles=2, thin_week="skip"), "2026-W47", one, SERIES)
    assert skip.skip_reason == "thin week: 1 article(s), min_articles is 2"
    send = plan_edition(campaign(min_articles=2, thin_week="send"), "2026-W47", one, SERIES)
    assert send.skip_reason is None and len(send.edition.articles) == 1
    empty = plan_edition(campaign(min_articles=0, thin_week="send"), "2026-W47", [], SERIES)
    assert empty.skip_reason is not None  # an empty edition is never sent


def test_campaign_match_rules_add_to_the_series_rules():
    from publisher.config import SeriesMatch

    d = datetime(2026, 11, 18, 12, tzinfo=PARIS)
    garage = art(1, "Garage 56 : un projet à l’hydrogène retenu", d)
    plain = campaign(min_articles=1)
    assert plan_edition(plain, "2026-W47", [garage], SERIES).edition.articles == ()
    extended = campaign(min_articles=1, match={"le-mans": SeriesMatch(keywords=("Garage 56",))})
    plan = plan_edition(extended, "2026-W47", [garage], SERIES)
    assert [a.id for a in plan.edition.articles] == ["id-1"]
    assert plan.edition.series["id-1"] == ("le-mans",)


def test_daily_and_monthly_edition_ids_and_the_cadence_they_must_match():
    assert window("2026-10-25", PARIS) == (datetime(2026, 10, 25, tzinfo=PARIS), datetime(2026, 10, 26, tzinfo=PARIS))
    assert window("2026-02", PARIS) == (datetime(2026, 2, 1, tzinfo=PARIS), datetime(2026, 3, 1, tzinfo=PARIS))
    assert edition_id_of(datetime(2026, 10, 31, 23, 30, tzinfo=UTC), PARIS, "monthly") == "2026-11"
    assert edition_id_of(datetime(2026, 10, 31, 22, 30, tzinfo=UTC), PARIS, "daily") == "2026-10-31"
    with pytest.raises(ConfigError, match="'2026-02-30' is not a date"):
        parse_edition_id("2026-02-30")
    with pytest.raises(ConfigError, match="is not an ISO week like 2026-W47, a day like 2026-11-23 or a month"):
        parse_edition_id("2026-13")
    daily = campaign(schedule="daily 07:00")
    with pytest.raises(ConfigError, match="'2026-W47' is a week but campaign 'endurance' is daily"):
        plan_edition(daily, "2026-W47", [], SERIES)
    assert plan_edition(daily, "2026-11-17", [], SERIES).edition.slot == datetime(2026, 11, 18, 7, 0, tzinfo=PARIS)
