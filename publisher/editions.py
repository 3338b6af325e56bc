"""Pure planning: which series an article belongs to, edition windows and slots, what goes in an edition.

Nothing here reads the clock or the store: callers pass `now` and the articles.
Windows are days, ISO weeks or months in the campaign's time zone, after its schedule ("daily 07:00",
"monday 08:00", "monthly 1 09:00"): local midnight to local midnight, so a DST day is 23 or 25 hours
long and a DST week 167 or 169. The edition id says which: "2026-11-23", "2026-W47", "2026-11". An
edition's slot is the first `schedule` time at or after its window's end: the digest of week 47 goes
out on Monday of week 48, the daily edition of 23 November on the 24th at 07:00.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone
from typing import Iterable, Mapping, Sequence
from zoneinfo import ZoneInfo

from publisher.config import Campaign, SeriesSettings, parse_schedule
from publisher.errors import ConfigError
from publisher.models import Article, Edition

_EDITION_ID = re.compile(r"^(\d{4})-W(\d{2})$")
_DAY_ID = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_MONTH_ID = re.compile(r"^(\d{4})-(\d{2})$")
_ALERT_ID = re.compile(r"^alert-(\d{8}T\d{4})-([0-9a-f]{8})$")


def fold(text: str) -> str:
    """Case- and accent-insensitive form used for matching ("Le Mans" == "le mans" == "LE MANS")."""
    text = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.replace("’", "'")
    return re.sub(r"\s+", " ", text).strip()


def series_of(article: Article, series: Mapping[str, SeriesSettings]) -> tuple[str, ...]:
    """The series an article belongs to: from its feed categories and keyword rules on its title."""
    return tuple(name for name, _ in series_rules(article, series))


def series_rules(article: Article, series: Mapping[str, SeriesSettings]) -> list[tuple[str, str]]:
    """(series, the rule that matched) for each series of an article: "category WEC", "title prefix ...", "keyword ..."."""
    cats = {fold(c): c for c in article.categories}
    title = fold(article.title)
    found = []
    for name, s in series.items():
        names = {fold(n) for n in (name, s.label, *s.categories, *s.aliases)}
        cat = next((cats[c] for c in cats if c in names), None)
        if cat is not None:
            found.append((name, f"category {cat!r}"))
            continue
        prefix = next((p for p in s.title_prefixes if _prefix_match(title, fold(p))), None)
        if prefix is not None:
            found.append((name, f"title prefix {prefix!r}"))
            continue
        text = title
        for phrase in s.exclude:  # "Petit Le Mans" must not match the keyword "Le Mans"
            text = _words(fold(phrase)).sub(" ", text)
        keyword = next((k for k in (*s.keywords, *s.aliases) if k.strip() and _words(fold(k)).search(text)), None)
        if keyword is not None:
            found.append((name, f"keyword {keyword!r}"))
    return found


def rules_for(campaign: Campaign, series: Mapping[str, SeriesSettings]) -> dict[str, SeriesSettings]:
    """settings.toml's series rules with the campaign's own `[match.NAME]` rules added."""
    merged = dict(series)
    for name, extra in campaign.match.items():
        base = merged[name]
        merged[name] = replace(base, **{f: getattr(base, f) + getattr(extra, f)
                                         for f in ("categories", "title_prefixes", "keywords", "aliases", "exclude")})
    return merged


def _words(phrase: str) -> re.Pattern:
    """A whole-words pattern for a folded phrase."""
    return re.compile(rf"(?<!\w){re.escape(phrase)}(?!\w)")


def _prefix_match(title: str, prefix: str) -> bool:
    # "Rallycross France: ...", "Rallycross France : ...", "Rallycross France (Lessay): ..."
    if not prefix or not title.startswith(prefix):
        return False
    rest = title[len(prefix):].lstrip()
    return rest.startswith((":", "(", "-", "–", "|")) or rest == ""


def parse_edition_id(text: str) -> tuple[str, date]:
    """An edition id and the first day of its period: '2026-W47' (an ISO week), '2026-11-23' (a day) or
    '2026-11' (a month) -> ("weekly", 16 Nov 2026), ("daily", 23 Nov 2026), ("monthly", 1 Nov 2026).

    A bad id is a ConfigError naming the expected forms."""
    text = text.strip()
    if _ALERT_ID.match(text):
        return "alert", alert_minute(text).date()
    hint = "write it as YEAR-Www (2026-W47), YEAR-MM-DD (2026-11-23) or YEAR-MM (2026-11), after the campaign's schedule; 'publisher status' lists the editions"
    if m := _DAY_ID.match(text):
        try:
            return "daily", date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError:
            raise ConfigError(f"--edition: {text!r} is not a date", hint=hint) from None
    if (m := _MONTH_ID.match(text)) and 1 <= int(m.group(2)) <= 12 and int(m.group(1)) >= 1:
        return "monthly", date(int(m.group(1)), int(m.group(2)), 1)
    m = _EDITION_ID.match(text)
    if not m:
        raise ConfigError(f"--edition: {text!r} is not an ISO week like 2026-W47, a day like 2026-11-23 or a month"
                          f" like 2026-11", hint=hint)
    year, week = int(m.group(1)), int(m.group(2))
    if not 1 <= year <= 9998:
        raise ConfigError(f"--edition: year {year} is out of range", hint=hint)
    last = date(year, 12, 28).isocalendar()[1]  # 28 December is always in the year's last ISO week
    if not 1 <= week <= last:
        raise ConfigError(f"--edition: {year} has no week {week} (its weeks are W01 to W{last})", hint=hint)
    return "weekly", date.fromisocalendar(year, week, 1)


def _period_id(cadence: str, day: date) -> str:
    """The id of the period of `cadence` containing `day`."""
    if cadence == "daily":
        return day.isoformat()
    if cadence == "monthly":
        return f"{day.year:04d}-{day.month:02d}"
    y, w, _ = day.isocalendar()
    return f"{y}-W{w:02d}"


def _period_end(cadence: str, first: date) -> date:
    """The first day after the period of `cadence` that starts on `first`."""
    if cadence == "daily":
        return first + timedelta(days=1)
    if cadence == "monthly":
        return date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return first + timedelta(days=7)


def edition_id_of(moment: datetime, tz: ZoneInfo, cadence: str = "weekly") -> str:
    """The edition (ISO week, day or month, after `cadence`) containing `moment` in time zone `tz`."""
    return _period_id(cadence, moment.astimezone(tz).date())


def window(edition_id: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[first day 00:00, the next period's first day 00:00) of the edition's period, local time in `tz`;
    for an alert, the minute its article was published."""
    cadence, first = parse_edition_id(edition_id)
    if cadence == "alert":
        start = alert_minute(edition_id)
        return start.astimezone(tz), (start + timedelta(minutes=1)).astimezone(tz)
    return (datetime.combine(first, time(0), tz), datetime.combine(_period_end(cadence, first), time(0), tz))


def check_edition(campaign: Campaign, edition_id: str) -> None:
    """An edition id of the campaign's cadence (a week for a weekly campaign, ...); else one ConfigError line."""
    cadence, _ = parse_edition_id(edition_id)
    if cadence == "alert" and not campaign.alerts.enabled:
        raise ConfigError(f"--edition: {edition_id!r} is an alert but campaign {campaign.name!r} has no [alerts]",
                          hint=f"add an [alerts] table to {campaign.source or campaign.name}")
    if cadence not in ("alert", campaign.cadence):
        example = _period_id(campaign.cadence, date(2026, 11, 23))
        raise ConfigError(f"--edition: {edition_id!r} is a {_NOUNS[cadence]} but campaign {campaign.name!r} is"
                          f" {campaign.cadence} (schedule = {campaign.schedule!r})",
                          hint=f"name one of its editions like {example}; 'publisher status {campaign.name}' lists them")


_NOUNS = {"daily": "day", "weekly": "week", "monthly": "month"}


def slot(campaign: Campaign, edition_id: str) -> datetime:
    """When the edition is due: the first schedule time at or after its window's end; an alert at once."""
    if is_alert_id(edition_id):
        return alert_minute(edition_id).astimezone(campaign.tz)
    s = parse_schedule(campaign.schedule, f"{campaign.source}: schedule")
    _, end = window(edition_id, campaign.tz)
    day = end.date()
    if s.cadence == "weekly":
        day += timedelta(days=(s.weekday - end.weekday()) % 7)
    elif s.cadence == "monthly":
        day = day.replace(day=s.day)  # the period ends on a 1st; the slot is that month's `day`
    return datetime.combine(day, time(s.hour, s.minute), campaign.tz)


def shift(edition_id: str, periods: int) -> str:
    """The edition `periods` weeks, days or months (after the id's form) before or after `edition_id`."""
    cadence, first = parse_edition_id(edition_id)
    if cadence == "daily":
        return _period_id(cadence, first + timedelta(days=periods))
    if cadence == "monthly":
        months = first.year * 12 + first.month - 1 + periods
        return _period_id(cadence, date(months // 12, months % 12 + 1, 1))
    return _period_id(cadence, first + timedelta(weeks=periods))


def latest_slot_edition(campaign: Campaign, now: datetime) -> str:
    """The edition whose slot is the latest one at or before `now`."""
    eid = shift(edition_id_of(now, campaign.tz, campaign.cadence), -1)
    while slot(campaign, eid) > now:
        eid = shift(eid, -1)
    while slot(campaign, shift(eid, 1)) <= now:
        eid = shift(eid, 1)
    return eid


def next_slot(campaign: Campaign, now: datetime) -> tuple[str, datetime]:
    """The next edition to go out strictly after `now`, and its slot."""
    eid = shift(latest_slot_edition(campaign, now), 1)
    return eid, slot(campaign, eid)


def current_edition(campaign: Campaign, now: datetime, lateness: timedelta) -> str:
    """The edition a preview shows by default: the one due now (inside lateness), else the next one."""
    eid = latest_slot_edition(campaign, now)
    if now.astimezone(timezone.utc) - slot(campaign, eid).astimezone(timezone.utc) <= lateness:
        return eid
    return shift(eid, 1)


@dataclass(frozen=True)
class Plan:
    """A planned edition, or the reason it will not go out (thin week)."""

    edition: Edition
    skip_reason: str | None = None


def plan_edition(campaign: Campaign, edition_id: str, articles: Iterable[Article],
                 series: Mapping[str, SeriesSettings]) -> Plan:
    """Pick the campaign's articles in the edition's window, order them, choose the lead, apply the limits."""
    check_edition(campaign, edition_id)
    if is_alert_id(edition_id):
        return _plan_alert(campaign, edition_id, articles, series)
    tz = campaign.tz
    series = rules_for(campaign, series)
    start, end = window(edition_id, tz)
    wanted = set(campaign.series)
    chosen: list[Article] = []
    matched: dict[str, tuple[str, ...]] = {}
    seen: set[str] = set()
    for a in articles:
        if not (start <= a.published < end) or a.id in seen:
            continue
        s = tuple(x for x in series_of(a, series) if x in wanted)
        if s:
            seen.add(a.id)
            chosen.append(a)
            matched[a.id] = s
    chosen.sort(key=lambda a: (a.published, a.id), reverse=True)
    lead = _lead(chosen)
    if lead is not None:
        chosen.remove(lead)
        chosen.insert(0, lead)
    chosen = chosen[: campaign.max_articles]
    edition = Edition(campaign=campaign.name, id=edition_id, window_start=start, window_end=end,
                      slot=slot(campaign, edition_id), articles=tuple(chosen),
                      series={a.id: matched[a.id] for a in chosen})
    if len(chosen) < max(1, campaign.min_articles):
        reason = f"thin week: {len(chosen)} article(s), min_articles is {campaign.min_articles}"
        if campaign.thin_week == "skip" or not chosen:
            return Plan(edition, skip_reason=reason)
    return Plan(edition)


def picked(campaign: Campaign, plan: Plan, series: Mapping[str, SeriesSettings]) -> list[tuple[Article, list[str]]]:
    """The edition's articles, each with its series and the rule that matched ("wec (category 'WEC')")."""
    rules, wanted = rules_for(campaign, series), set(campaign.series)
    return [(a, [f"{name} ({rule})" for name, rule in series_rules(a, rules) if name in wanted]) for a in plan.edition.articles]


def left_out(campaign: Campaign, plan: Plan, articles: Iterable[Article],
             series: Mapping[str, SeriesSettings]) -> list[tuple[Article, str]]:
    """The articles of the edition's window that `plan` did not pick, each with why (for the review page)."""
    picked = {a.id for a in plan.edition.articles}
    rules, wanted = rules_for(campaign, series), set(campaign.series)
    start, end = plan.edition.window_start, plan.edition.window_end
    out = []
    for a in articles:
        if a.id in picked or not (start <= a.published < end):
            continue
        matched = [f"{name} ({rule})" for name, rule in series_rules(a, rules) if name in wanted]
        out.append((a, f"over max_articles ({campaign.max_articles}); series {', '.join(matched)}" if matched
                    else "matches none of the campaign's series"))
    return out


# -- per-article alerts: one article, alone, at once ------------------------------------------------


def alert_id(article: Article) -> str:
    """The edition id of an alert for `article`: its publication minute (UTC) and a digest of its id."""
    digest = hashlib.sha256(article.id.encode("utf-8")).hexdigest()[:8]
    return f"alert-{article.published.astimezone(timezone.utc):%Y%m%dT%H%M}-{digest}"


def is_alert_id(edition_id: str) -> bool:
    return bool(_ALERT_ID.match(edition_id))


def alert_minute(edition_id: str) -> datetime:
    """The publication minute (UTC) an alert id carries."""
    m = _ALERT_ID.match(edition_id)
    if m is None:
        raise ConfigError(f"--edition: {edition_id!r} is not an alert id like alert-20261121T1625-1a2b3c4d")
    return datetime.strptime(m.group(1), "%Y%m%dT%H%M").replace(tzinfo=timezone.utc)


def matches_alert(campaign: Campaign, article: Article, series: Mapping[str, SeriesSettings]) -> tuple[str, ...]:
    """The campaign's series of `article` when it matches the campaign's alert rules, else ()."""
    rules = campaign.alerts
    if not rules.enabled:
        return ()
    cats = {fold(c) for c in article.categories}
    title = fold(article.title)
    if not (cats & {fold(c) for c in rules.categories}
            or any(_words(fold(k)).search(title) for k in rules.keywords if k.strip())):
        return ()
    wanted = set(campaign.series)
    return tuple(s for s in series_of(article, rules_for(campaign, series)) if s in wanted)


def alerts_in(campaign: Campaign, articles: Iterable[Article], series: Mapping[str, SeriesSettings]) -> list[tuple[str, datetime]]:
    """(alert edition id, publication time) of each article among `articles` that is an alert of `campaign`, oldest first."""
    found = {alert_id(a): a.published for a in articles if matches_alert(campaign, a, series)}
    return sorted(found.items(), key=lambda kv: (kv[1], kv[0]))


def _plan_alert(campaign: Campaign, edition_id: str, articles: Iterable[Article],
                series: Mapping[str, SeriesSettings]) -> Plan:
    start, end = window(edition_id, campaign.tz)
    chosen = [a for a in articles if alert_id(a) == edition_id and matches_alert(campaign, a, series)]
    edition = Edition(campaign=campaign.name, id=edition_id, window_start=start, window_end=end,
                      slot=slot(campaign, edition_id), articles=tuple(chosen[:1]),
                      series={a.id: matches_alert(campaign, a, series) for a in chosen[:1]})
    if not chosen:
        return Plan(edition, skip_reason="alert: the article is gone or no longer matches [alerts]")
    return Plan(edition)


def _lead(articles: Sequence[Article]) -> Article | None:
    """The lead story: the newest article with an image, else the newest."""
    for a in articles:
        if a.image:
            return a
    return articles[0] if articles else None


# -- what is due: the one decision shared by `publisher run` and `publisher schedule` -------------
