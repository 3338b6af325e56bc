"""Literal articles, settings and campaigns for the rendering, posts and lint tests (no files, no network)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from publisher.config import Campaign, PublisherSettings, SeriesSettings, Settings, SocialSettings
from publisher.editions import plan_edition
from publisher.models import Article, Edition

SERIES = {
    "wec": SeriesSettings(label="WEC", categories=("WEC",), hashtags=("#WEC",)),
    "elms": SeriesSettings(label="ELMS", categories=("ELMS",), hashtags=("#ELMS",)),
    "le-mans": SeriesSettings(label="24 Heures du Mans", categories=("Le Mans",), hashtags=("#LeMans24",)),
}

SUMMARY = ("Le constructeur japonais a dominé la dernière manche de la saison, devant Ferrari et Porsche, "
           "au terme d'une course marquée par plusieurs neutralisations et une stratégie audacieuse en fin de course.")


def settings(root: Path, **publisher) -> Settings:
    """Settings rooted at `root` (its templates/ folder is the user's layer)."""
    pub = PublisherSettings(name="Endurance-Info", site_url="https://www.endurance-info.com", **publisher)
    return Settings(root=root, source="settings.toml", publisher=pub, series=dict(SERIES))


def campaign(**overrides) -> Campaign:
    values = dict(name="endurance", title="Endurance Hebdo", series=("wec", "elms", "le-mans"),
                  channels=("email", "x", "mastodon", "bluesky"), intro="Toute l'actualité de l'endurance.",
                  hashtags=("#Endurance",), social=SocialSettings(mode="thread", thread_top=3), max_articles=12)
    values.update(overrides)
    return Campaign(**values)


def article(i: int, **overrides) -> Article:
    values = dict(id=f"https://www.endurance-info.com/?p={i}", link=f"https://www.endurance-info.com/2026/11/wec-article-{i}/",
                  title=f"WEC : la Toyota n°{i} s'impose à Bahreïn", summary=SUMMARY,
                  published=datetime(2026, 11, 17, 10, tzinfo=timezone.utc) + timedelta(hours=i),
                  image=f"https://www.endurance-info.com/wp-content/uploads/2026/11/photo-{i}.jpg",
                  author="Jean Dupont", categories=("WEC",))
    values.update(overrides)
    return Article(**values)


def edition(c: Campaign, articles, s: Settings, edition_id: str = "2026-W47") -> Edition:
    return plan_edition(c, edition_id, articles, s.series).edition
