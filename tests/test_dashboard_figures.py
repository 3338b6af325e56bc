"""The dashboard's figures of one edition: email from the ledger and the mail system's reports, posts per network."""

from __future__ import annotations

from datetime import datetime, timezone

from publisher.config import Campaign
from publisher.models import State
from publisher.store.db import Store
from publisher.store.ledger import Ledger
from publisher.web.dashboard import figures

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
KEY = "endurance/2026-W47"


def test_posts_per_network_and_email_figures_of_one_edition(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    ledger = Ledger(store, clock=lambda: NOW)
    campaign = Campaign(name="endurance", title="Endurance Hebdo", series=("wec",),
                        channels=("email", "x", "mastodon", "bluesky"))
    ledger.plan(KEY, "email", [f"lecteur{i}@example.org" for i in range(5)])
    ledger.claim_range(KEY, "email", 4, "", NOW)
    held = ledger.sending(KEY, "email")
    ledger.finish(KEY, "email", [(held[0], State.FAILED, None, "550 no such user"),
                                 *((t, State.SENT, "id", "250 ok") for t in held[1:])])
    for channel, sent in (("x", 3), ("outbox:mastodon", 2), ("bluesky", 0), ("linkedin", 2)):
        ledger.plan(KEY, channel, [f"post:{i}" for i in range(3)])
        for i in range(sent):
            assert ledger.claim_one(KEY, channel, f"post:{i}")
        ledger.finish(KEY, channel, [(f"post:{i}", State.SENT, f"id{i}", "ok") for i in range(sent)])
    f = figures(store, ledger, campaign, "2026-W47")
    assert (f.recipients, f.delivered, f.deferred, f.failed, f.unknown) == (5, 3, 1, 1, 0)
    # every network of the campaign, its outbox form counted as itself; a network the campaign does not use is left out
    assert f.posts == {"x": 3, "mastodon": 2, "bluesky": 0}
    store.close()
