"""Configuration: settings.toml and campaigns/*.toml read once into frozen values; knows nothing of channels.

    settings.py    Settings and its tables; read_settings(path, channel_tables); secret(NAME)
    campaigns.py   Campaign; load_campaigns(settings, names)
    schema.py      the frozen-dataclass reader and the checks (parse_duration, check_url, ...)

The channel tables ([x], [mastodon], ...) are read with the settings classes the caller passes in:
`publisher.app.load_settings` takes them from the channel registry.
"""

from publisher.config.campaigns import (
                                        AlertSettings,
                                        Campaign,
                                        SeriesMatch,
                                        SocialSettings,
                                        UtmSettings,
                                        load_campaign,
                                        load_campaigns,
                                        Schedule,
                                        parse_schedule,
)
from publisher.config.schema import parse_duration
from publisher.config.settings import (
                                        BouncesSettings,
                                        EmailSettings,
                                        FeedSettings,
                                        PublisherSettings,
                                        ScheduleSettings,
                                        SeriesSettings,
                                        Settings,
                                        SmtpSettings,
                                        WebhookSettings,
                                        WebSettings,
                                        read_settings,
                                        secret,
)

__all__ = ["AlertSettings", "BouncesSettings", "Campaign", "EmailSettings", "FeedSettings", "PublisherSettings",
           "ScheduleSettings", "SeriesMatch", "SeriesSettings", "Settings", "SmtpSettings", "SocialSettings", "UtmSettings",
           "WebhookSettings", "WebSettings", "load_campaign", "load_campaigns", "parse_duration", "parse_schedule",
           "read_settings", "Schedule", "secret"]
