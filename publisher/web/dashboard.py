"""The dashboard of the admin area: how sending went, per campaign and edition, with charts (Chart.js).

    GET <base>/admin/dashboard

Per edition: recipients, delivered, deferred, failed, unknown, bounces, complaints, unsubscribes (the
ledger's delivery_counts and the mail system's reports), and posts per network; charts over the last
editions: list growth (recipients), bounce and unsubscribe rates. Chart.js is served from
publisher/web/static/ (vendored with its licence): nothing is fetched from another site.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from publisher.config import Campaign
from publisher.store.db import Store
from publisher.store.feedback import counts_for_edition
from publisher.store.ledger import Ledger
from publisher.store.newsroom import session
from publisher.web.admin import COOKIE, PAGE_POLICY

if TYPE_CHECKING:
    from publisher.web.context import Web

EDITIONS = 12  # editions per campaign on the dashboard and its charts


@dataclass
class Figures:
    """One edition's figures."""

    edition_id: str
    recipients: int = 0
    delivered: int = 0
    deferred: int = 0
    failed: int = 0
    unknown: int = 0
    bounces: int = 0
    complaints: int = 0
    unsubscribes: int = 0
    posts: dict[str, int] = field(default_factory=dict)  # network -> posts sent

    @property
    def bounce_rate(self) -> float:
        return self.bounces / self.recipients if self.recipients else 0.0

    @property
    def unsubscribe_rate(self) -> float:
        return self.unsubscribes / self.recipients if self.recipients else 0.0


def figures(store: Store, ledger: Ledger, campaign: Campaign, edition_id: str) -> Figures:
    """The figures of one edition, from the ledger's counts and the feedback reports."""
    key = f"{campaign.name}/{edition_id}"
    f = Figures(edition_id)
    for channel in store.delivery_channels(key):
        network = channel.split(":")[-1]
        counts = ledger.counts(key, channel)
        if network == "email":
            f.recipients += sum(counts.values())
            f.deferred += counts["planned"] + counts["sending"]
            f.failed += counts["failed"]
            f.unknown += counts["unknown"]
            f.delivered += counts["sent"]
        elif network in campaign.channels:
            f.posts[network] = f.posts.get(network, 0) + counts["sent"]
    reports = counts_for_edition(store, key)
    f.bounces = reports["hard-bounce"] + reports["soft-bounce"]
    f.complaints, f.unsubscribes = reports["complaint"], reports["unsubscribed"]
    f.delivered = max(f.delivered - f.bounces, 0)  # the relay's 250 is not delivery when a bounce came back
    return f


def campaign_figures(store: Store, ledger: Ledger, campaign: Campaign) -> list[Figures]:
    """The last editions of a campaign that went out (frozen), oldest first."""
    frozen = [r.edition_id for r in store.edition_records(campaign.name) if r.status == "frozen"][-EDITIONS:]
    return [figures(store, ledger, campaign, eid) for eid in frozen]


def routes(web: "Web") -> list[Route]:
    base = f"{web.base_path}/admin"

    async def dashboard(request: Request) -> Response:
        token = request.cookies.get(COOKIE, "")
        me = await web.db(session, web.store, token, web.clock()) if token else None
        if me is None:
            return RedirectResponse(f"{base}/login", status_code=303)
        rows = await web.db(lambda: [(c, campaign_figures(web.store, web.ledger(), c)) for c in web.campaigns])
        charts = {c.name: {"labels": [f.edition_id for f in fs], "recipients": [f.recipients for f in fs],
                           "bounce_rate": [round(100 * f.bounce_rate, 2) for f in fs],
                           "unsubscribe_rate": [round(100 * f.unsubscribe_rate, 2) for f in fs]} for c, fs in rows}
        networks = sorted({n for _, fs in rows for f in fs for n in f.posts})
        # the data goes in a JSON script element (never run), read by static/dashboard.js: no inline script
        data = json.dumps(charts).replace("<", "\\u003c")
        body = web.pages.render("admin/dashboard.html", web.settings.web.locale, base=base, title="Dashboard", me=me,
                                rows=rows, networks=networks, data=data)
        return HTMLResponse(body, headers={"content-security-policy": PAGE_POLICY})

    return [Route(f"{base}/dashboard", dashboard, methods=["GET", "HEAD"])]
