"""One-click unsubscribe (RFC 8058) from one campaign's list, and the preferences page.

    GET  <unsubscribe path>?t=TOKEN                a page with one button; never unsubscribes by itself
                                                   (mail scanners and link previewers open every link)
    POST <unsubscribe path>?t=TOKEN                leaves the campaign the mail came from (its list and
                                                   series) at once: `List-Unsubscribe=One-Click` from a
                                                   mail client, or the page's button
    GET/POST <unsubscribe path>/preferences?t=TOKEN   pick the series to keep, or unsubscribe from all

The path is the one of [email].unsubscribe_url; the reverse proxy forwards the public https URL here.
Every token that does not verify (forged, altered, another subscriber's, garbage, missing, a forgotten
subscriber's) gets the very same 400 page. A link from before opaque tokens (the address inside) still
works and, as it promised, unsubscribes from everything.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from publisher.store.audience import is_subscriber, leave_lists, record_opt_out, subscribed_lists
from publisher.store.subscribers import set_lists, suppress, suppression_reason
from publisher.web.pages import N_
from publisher.web.security import read_form

if TYPE_CHECKING:
    from publisher.web.context import Web

log = logging.getLogger("publisher")


class _Reader:
    """Whom a token names: the address, and the campaign list it unsubscribes from ("" = everything)."""

    def __init__(self, email: str, list_name: str):
        self.email, self.list = email, list_name


def routes(web: "Web") -> list[Route]:
    path = web.unsubscribe_path
    prefs_path = f"{path}/preferences"

    def lookup(token: str) -> _Reader | None:  # in the store's thread
        link = web.signer.verify_link(token) if token else None
        if link is not None:
            found = _Reader(link.email, link.list)
        else:
            email = web.signer.legacy_address(token) if token else None
            found = _Reader(email, "") if email else None
        # a forgotten subscriber's links name nobody any more (and must not store the address again)
        return found if found and is_subscriber(web.store, found.email) else None

    async def reader(request: Request) -> _Reader | None:
        return await web.db(lookup, request.query_params.get("t", ""))

    def locale_of(reader: _Reader | None) -> str:
        campaign = web.campaign_of_list(reader.list) if reader and reader.list else None
        return campaign.locale if campaign else web.settings.web.locale

    def refused(locale: str) -> Response:
        return web.message(locale, N_("Invalid link"), N_("This link is not valid or has been altered. Use the unsubscribe"
                           " link at the bottom of one of our emails."), status=400)

    def lists_of_campaign(list_name: str) -> list[str]:
        campaign = web.campaign_of_list(list_name)
        return [list_name, *(campaign.series if campaign else ())]

    def title_of(reader: _Reader, locale: str) -> str:
        campaign = web.campaign_of_list(reader.list) if reader.list else None
        if campaign:
            return campaign.title
        return web.pages.gettext(locale, N_("all newsletters of %(name)s"), name=web.settings.publisher.name)

    def page(reader: _Reader, locale: str, done: bool = False, already: bool = False) -> Response:
        g = web.pages.gettext
        prefs = f"{prefs_path}?t={web.signer.link(reader.email)}"
        return web.page("unsubscribe.html", locale, title=g(locale, N_("Unsubscribe")), list_title=title_of(reader, locale),
                        done=done, already=already, action=f"{path}?t={web.signer.link(reader.email, reader.list)}", preferences=prefs)

    def is_out(reader: _Reader) -> bool:  # in the store's thread
        if suppression_reason(web.store, reader.email) is not None:
            return True
        return bool(reader.list) and not (subscribed_lists(web.store, reader.email) & set(lists_of_campaign(reader.list)))

    async def unsubscribe_get(request: Request) -> Response:
        who = await reader(request)
        locale = locale_of(who)
        if who is None:
            return refused(locale)
        return page(who, locale, already=await web.db(is_out, who))

    def leave(who: _Reader, how: str) -> None:  # in the store's thread
        now = web.clock()
        if who.list:
            leave_lists(web.store, who.email, lists_of_campaign(who.list), how, now)
        elif suppress(web.store, who.email, "unsubscribed", now, detail=how):
            record_opt_out(web.store, who.email, "*", how, now)

    async def unsubscribe_post(request: Request) -> Response:
        form = await read_form(request)
        who = await reader(request)
        locale = locale_of(who)
        if who is None:
            return refused(locale)
        how = "one-click" if form.get("List-Unsubscribe") == ["One-Click"] else "web page"
        await web.db(leave, who, how)
        log.info("serve: a reader unsubscribed from %s (%s)", who.list or "everything", how)
        return page(who, locale, done=True)

    async def preferences(request: Request) -> Response:
        form = await read_form(request) if request.method == "POST" else {}
        who = await reader(request)
        locale = locale_of(who)
        if who is None:
            return refused(locale)
        choices = web.choices()
        saved = gone = False
        if request.method == "POST":
            if form.get("action") == ["all"]:
                await web.db(leave, _Reader(who.email, ""), "preferences page")
                gone = True
            else:
                keep = form.get("list", [])
                await web.db(save, who.email, keep, [n for n, _ in choices])
                saved = True
        mine = await web.db(subscribed_lists, web.store, who.email)
        token = web.signer.link(who.email)
        return web.page("preferences.html", locale, title=web.pages.gettext(locale, N_("My newsletters")), choices=choices,
                        mine=mine, saved=saved, gone=gone, action=f"{prefs_path}?t={token}")

    def save(email: str, keep: list[str], choosable: list[str]) -> None:  # in the store's thread
        now = web.clock()
        dropped = subscribed_lists(web.store, email) & set(choosable) - {k.lower() for k in keep}
        set_lists(web.store, email, keep, choosable, now)
        if dropped:
            record_opt_out(web.store, email, ";".join(sorted(dropped)), "preferences page", now)

    return [Route(path, unsubscribe_get, methods=["GET", "HEAD"]), Route(path, unsubscribe_post, methods=["POST"]),
            Route(prefs_path, preferences, methods=["GET", "HEAD", "POST"])]
