"""settings.toml and campaign files: every mistake is one line naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from publisher.app import load_settings
from publisher.config import load_campaigns, parse_duration
from publisher.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def test_repository_settings_and_campaigns_load():
    settings = load_settings(REPO / "settings.toml")
    campaigns = {c.name: c for c in load_campaigns(settings)}
    assert {"endurance", "imsa", "gt", "rallycross"} <= set(campaigns)
    endurance = campaigns["endurance"]
    assert endurance.series == ("wec", "elms", "asian-lms", "le-mans")
    assert endurance.locale == "fr_FR" and endurance.timezone == "Europe/Paris"
    assert settings.smtp.port == 587 and settings.publisher.delivery == "outbox"
    assert settings.store_path == REPO / "var" / "publisher.sqlite3"


def _settings(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "settings.toml"
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize("text, message", [
    ('[smtp]\nport = "abc"\n', "settings.toml: [smtp].port must be an integer, not 'abc'"),
    ("[smtp]\nprot = 25\n", "settings.toml: [smtp]: unknown key 'prot'"),
    ('[smtp]\nsecurity = "ssl"\n', "settings.toml: [smtp].security must be one of 'none', 'starttls', 'tls'"),
    ("[smpt]\nport = 25\n", "settings.toml: unknown table [smpt]"),
    ('[schedule]\nlateness = "tomorrow"\n', "settings.toml: [schedule].lateness must be a duration"),
    ('[feeds]\nsources = "feed.xml"\n', "settings.toml: [feeds].sources must be a list of strings"),
    ('[series.wec]\nlabel = "WEC"\nhashtag = ["#WEC"]\n', "settings.toml: [series.wec]: unknown key 'hashtag'"),
    ("[publisher\n", "settings.toml: not valid TOML"),
])
def test_bad_settings_name_file_and_key(tmp_path, monkeypatch, text, message):
    monkeypatch.chdir(tmp_path)
    _settings(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_settings("settings.toml")
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


def test_missing_settings_file_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"settings.toml: file not found; create it, or pass --settings PATH"):
        load_settings("settings.toml")


CAMPAIGN_OK = '''title = "GT Hebdo"
series = ["gt"]
timezone = "Europe/Paris"
channels = ["email"]
'''


@pytest.mark.parametrize("text, message", [
    (CAMPAIGN_OK + 'colour = "red"\n', "campaigns/gt.toml: unknown key 'colour'"),
    (CAMPAIGN_OK.replace('["gt"]', '["formula-e"]'), "campaigns/gt.toml: series: unknown series 'formula-e'"),
    (CAMPAIGN_OK.replace("Europe/Paris", "Europe/Lyon"), "campaigns/gt.toml: timezone: unknown time zone 'Europe/Lyon'"),
    (CAMPAIGN_OK.replace('["email"]', '["fax"]'), "campaigns/gt.toml: channels: unknown channel 'fax' (known channels: "),
    (CAMPAIGN_OK + "max_articles = \"ten\"\n", "campaigns/gt.toml: max_articles must be an integer"),
    (CAMPAIGN_OK + 'schedule = "every monday"\n', "campaigns/gt.toml: schedule must look like 'monday 08:00'"),
    (CAMPAIGN_OK + 'schedule = "monthly 31 09:00"\n', "campaigns/gt.toml: schedule must look like 'monday 08:00', 'daily 07:00' or 'monthly 1 09:00' (day 1 to 28), not 'monthly 31 09:00'"),
    (CAMPAIGN_OK + "[social]\nmode = \"storm\"\n", "campaigns/gt.toml: social.mode must be one of"),
    ('series = ["gt"]\n', "campaigns/gt.toml: missing required key 'title'"),
    (CAMPAIGN_OK + '[match.imsa]\nkeywords = ["Daytona"]\n', "campaigns/gt.toml: [match.imsa]: 'imsa' is not one of this campaign's series (gt)"),
    (CAMPAIGN_OK + '[match.gt]\nkeyword = ["GT3"]\n', "campaigns/gt.toml: match.gt: unknown key 'keyword'"),
])
def test_bad_campaign_names_file_and_key(tmp_path, text, message):
    settings_path = _settings(tmp_path, '[series.gt]\nlabel = "GT"\n')
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "gt.toml").write_text(text, encoding="utf-8")
    settings = load_settings(settings_path)
    with pytest.raises(ConfigError) as err:
        load_campaigns(settings)
    assert str(err.value).startswith(message), str(err.value)


def test_unknown_campaign_name_lists_the_known_ones():
    settings = load_settings(REPO / "settings.toml")
    with pytest.raises(ConfigError, match=r"unknown campaign 'f1' \(campaigns in campaigns/: endurance, gt, imsa, rallycross\)"):
        load_campaigns(settings, ["f1"])


def test_durations():
    assert parse_duration("90s", "x").total_seconds() == 90
    assert parse_duration("1h", "x").total_seconds() == 3600
    assert parse_duration("2d", "x").days == 2
