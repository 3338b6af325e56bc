"""Pure planning: which series an article belongs to, edition windows and slots, what goes in an edition.

Nothing here reads the clock or the store: callers pass `now` and the articles.
Windows are ISO weeks in the campaign's time zone (Monday 00:00 to the next Monday 00:00, local time,
so a DST week is 167 or 169 hours long). An edition's slot is the first `schedule` time (e.g.
"monday 08:00") at or after its window's end: the digest of week 47 goes out on Monday of week 48.
"""

from __future__ import annotations

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


def fold(text: str) -> str:
    """Case- and accent-insensitive form used for matching ("Le Mans" == "le mans" == "LE MANS")."""
    text = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.replace("’", "'")
    return re.sub(r"\s+", " ", text).strip()


def series_of(article: Article, series: Mapping[str, SeriesSettings]) -> tuple[str, ...]:
    """The series an article belongs to: from its feed categories and keyword rules on its title."""
    cats = {fold(c) for c in article.categories}
    title = fold(article.title)
    found = []
    for name, s in series.items():
        names = {fold(n) for n in (name, s.label, *s.categories, *s.aliases)}
        if cats & names:
            found.append(name)
            continue
        if any(_prefix_match(title, fold(p)) for p in s.title_prefixes):
            found.append(name)
            continue
        text = title
        for phrase in s.exclude:  # "Petit Le Mans" must not match the keyword "Le Mans"
            text = _words(fold(phrase)).sub(" ", text)
        if any(_words(fold(k)).search(text) for k in (*s.keywords, *s.aliases) if k.strip()):
            found.append(name)
    return tuple(found)


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


def parse_edition_id(text: str) -> tuple[int, int]:
    """'2026-W47' -> (2026, 47); a bad id is a ConfigError naming the expected form."""
    m = _EDITION_ID.match(text.strip())
    hint = "write it as YEAR-Www, e.g. --edition 2026-W47; 'publisher status' lists the editions"
    if not m:
        raise ConfigError(f"--edition: {text!r} is not an ISO week like 2026-W47", hint=hint)
    year, week = int(m.group(1)), int(m.group(2))
    if not 1 <= year <= 9998:
        raise ConfigError(f"--edition: year {year} is out of range", hint=hint)
    last = date(year, 12, 28).isocalendar()[1]  # 28 December is always in the year's last ISO week
    if not 1 <= week <= last:
        raise ConfigError(f"--edition: {year} has no week {week} (its weeks are W01 to W{last})", hint=hint)
    return year, week


def edition_id_of(moment: datetime, tz: ZoneInfo) -> str:
    """The ISO week containing `moment` in time zone `tz`."""
    y, w, _ = moment.astimezone(tz).isocalendar()
    return f"{y}-W{w:02d}"


def window(edition_id: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[Monday 00:00, next Monday 00:00) of the ISO week, local time in `tz`."""
    y, w = parse_edition_id(edition_id)
    monday = date.fromisocalendar(y, w, 1)
    return (datetime.combine(monday, time(0), tz), datetime.combine(monday + timedelta(days=7), time(0), tz))


def slot(campaign: Campaign, edition_id: str) -> datetime:
    """When the edition is due: the first schedule time at or after its window's end."""
    weekday, hh, mm = parse_schedule(campaign.schedule, f"{campaign.source}: schedule")
    _, end = window(edition_id, campaign.tz)
    day = end.date() + timedelta(days=(weekday - end.weekday()) % 7)
    return datetime.combine(day, time(hh, mm), campaign.tz)


def shift(edition_id: str, weeks: int) -> str:
    y, w = parse_edition_id(edition_id)
    d = date.fromisocalendar(y, w, 1) + timedelta(weeks=weeks)
    yy, ww, _ = d.isocalendar()
    return f"{yy}-W{ww:02d}"


def latest_slot_edition(campaign: Campaign, now: datetime) -> str:
    """The edition whose slot is the latest one at or before `now`."""
    eid = shift(edition_id_of(now, campaign.tz), -1)
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


def _lead(articles: Sequence[Article]) -> Article | None:
    """The lead story: the newest article with an image, else the newest."""
    for a in articles:
        if a.image:
            return a
    return articles[0] if articles else None


# -- what is due: the one decision shared by `publisher run` and `publisher schedule` -------------
