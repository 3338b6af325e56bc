"""The public archive: every sent edition's web version at a stable URL, an index per campaign, an Atom feed.

    GET <base>/archive/                          the campaigns
    GET <base>/archive/CAMPAIGN/                 its sent editions, newest first
    GET <base>/archive/CAMPAIGN/EDITION/         the web version (the frozen email, nobody's data in it)
    GET <base>/archive/CAMPAIGN/feed.atom        the editions as an Atom feed

`site(...)` builds the same pages as (path, bytes) for `publisher archive --out DIR`, so the static copy
and the served one are the same bytes. An edition is in the archive once a channel finished sending it.
The web version is the frozen HTML with every personal slot filled with neutral values: no name, no
address, no token (the unsubscribe and preferences links lead to the sign-up page).
"""

from __future__ import annotations

import html
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from publisher.channels.email.message import NAME_TOKEN
from publisher.config import Campaign, Settings
from publisher.models import EMAIL_TOKEN, PREFERENCES_TOKEN, UNSUBSCRIBE_TOKEN, RenderedEdition
from publisher.pipeline import frozen_rendering
from publisher.preview import personalised
from publisher.store.db import Store
from publisher.web.pages import Pages

if TYPE_CHECKING:
    from publisher.web.context import Web

ATOM = "http://www.w3.org/2005/Atom"
# the web version shows the email's own inline CSS and remote images, runs no script, is framed by nobody
POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; frame-ancestors 'none'; base-uri 'none'"
PUBLIC_HEADERS = {"content-security-policy": POLICY, "cache-control": "public, max-age=300", "x-robots-tag": "all"}
TYPES = {"html": "text/html; charset=utf-8", "atom": "application/atom+xml; charset=utf-8"}


@dataclass(frozen=True)
class Sent:
    """One archived edition: its campaign, id and frozen rendering."""

    campaign: Campaign
    rendered: RenderedEdition

    @property
    def edition_id(self) -> str:
        return self.rendered.edition.id


def sent_editions(store: Store, campaign: Campaign) -> list[Sent]:
    """The campaign's editions some channel finished sending (a run ended "ok"), newest first."""
    out = []
    for rec in store.edition_records(campaign.name):
        if rec.status != "frozen" or not any(r.outcome == "ok" for r in store.runs(f"{campaign.name}/{rec.edition_id}")):
            continue
        rendered = frozen_rendering(store, campaign.name, rec.edition_id)
        if rendered is not None:
            out.append(Sent(campaign, rendered))
    return sorted(out, key=lambda s: s.rendered.edition.slot, reverse=True)


def public_values(settings: Settings) -> dict[str, str]:
    """The personal slots of an edition as the archive fills them: nobody's name, address or token."""
    signup = f"{settings.pages_url}/subscribe"
    return {UNSUBSCRIBE_TOKEN: signup, PREFERENCES_TOKEN: signup, EMAIL_TOKEN: "", NAME_TOKEN: ""}


def web_version(settings: Settings, rendered: RenderedEdition) -> str:
    return personalised(rendered.html, public_values(settings), lambda v: html.escape(v, quote=True))


def edition_url(settings: Settings, campaign: str, edition_id: str) -> str:
    """The stable public URL of an edition's web version: [web].archive_url, else the served archive's."""
    pattern = settings.web.archive_url or f"{settings.pages_url}/archive/{{campaign}}/{{edition}}/"
    return pattern.replace("{campaign}", campaign).replace("{edition}", edition_id)


def atom(settings: Settings, campaign: Campaign, sent: list[Sent]) -> bytes:
    """The Atom feed of a campaign's archived editions (newest first)."""
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed")
    index = edition_url(settings, campaign.name, "").rstrip("/").rsplit("/", 1)[0] + "/"
    ET.SubElement(feed, f"{{{ATOM}}}id").text = index
    ET.SubElement(feed, f"{{{ATOM}}}title").text = f"{campaign.title} · {settings.publisher.name}"
    ET.SubElement(feed, f"{{{ATOM}}}link", href=index)
    updated = sent[0].rendered.edition.slot if sent else None
    ET.SubElement(feed, f"{{{ATOM}}}updated").text = (updated.isoformat() if updated else "1970-01-01T00:00:00+00:00")
    ET.SubElement(ET.SubElement(feed, f"{{{ATOM}}}author"), f"{{{ATOM}}}name").text = settings.publisher.name
    for s in sent:
        url = edition_url(settings, campaign.name, s.edition_id)
        entry = ET.SubElement(feed, f"{{{ATOM}}}entry")
        ET.SubElement(entry, f"{{{ATOM}}}id").text = url
        ET.SubElement(entry, f"{{{ATOM}}}title").text = s.rendered.subject
        ET.SubElement(entry, f"{{{ATOM}}}link", href=url, rel="alternate", type="text/html")
        ET.SubElement(entry, f"{{{ATOM}}}updated").text = s.rendered.edition.slot.isoformat()
        ET.SubElement(entry, f"{{{ATOM}}}summary").text = s.rendered.preheader
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


def site(settings: Settings, pages: Pages, store: Store, campaigns: Iterable[Campaign]) -> dict[str, bytes]:
    """Every file of the archive, by its path under the archive's folder ("endurance/2026-W47/index.html")."""
    files: dict[str, bytes] = {}
    listed = []
    for c in campaigns:
        sent = sent_editions(store, c)
        listed.append((c, len(sent)))
        for s in sent:
            files[f"{c.name}/{s.edition_id}/index.html"] = web_version(settings, s.rendered).encode("utf-8")
        files[f"{c.name}/index.html"] = pages.render("archive/campaign.html", c.locale, title=c.title, campaign=c,
                                                    sent=sent).encode("utf-8")
        files[f"{c.name}/feed.atom"] = atom(settings, c, sent)
    files["index.html"] = pages.render("archive/index.html", settings.web.locale, title=settings.publisher.name,
                                       campaigns=listed).encode("utf-8")
    return files


def routes(web: "Web") -> list[Route]:
    base = f"{web.base_path}/archive"
    by_name = {c.name: c for c in web.campaigns}

    def one(path: str) -> bytes | None:  # in the store's thread
        name = path.split("/", 1)[0]
        chosen = [by_name[name]] if name in by_name else []
        if not chosen and path != "index.html":
            return None
        return site(web.settings, web.pages, web.store, chosen or web.campaigns).get(path)

    async def serve(request: Request) -> Response:
        path = request.url.path[len(base):].lstrip("/")
        if path == "" or path.endswith("/"):
            path += "index.html"
        body = await web.db(one, path)
        if body is None:
            return Response("Not found", status_code=404, media_type="text/plain")
        return Response(body, media_type=TYPES["atom" if path.endswith(".atom") else "html"], headers=PUBLIC_HEADERS)

    return [Route(f"{base}/", serve, methods=["GET", "HEAD"]),
            Route(f"{base}/{{campaign}}/", serve, methods=["GET", "HEAD"]),
            Route(f"{base}/{{campaign}}/feed.atom", serve, methods=["GET", "HEAD"]),
            Route(f"{base}/{{campaign}}/{{edition}}/", serve, methods=["GET", "HEAD"])]
