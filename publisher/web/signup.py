"""Sign-up with double opt-in.

    GET  <base>/subscribe                 the form for every campaign and series
    GET  <base>/subscribe/CAMPAIGN        the form of one campaign (its list checked, its series offered)
    POST <base>/subscribe                 the form's target, from our pages or a form embedded on the site
    GET  <base>/confirm?t=TOKEN           a page with one button (link scanners open every link)
    POST <base>/confirm?t=TOKEN           confirms: the reader is subscribed, with the consent record

Every accepted POST gets the same page ("check your inbox") whatever the address is (new, pending,
subscribed, unsubscribed, bounced, over its daily cap), and the work that differs (the store, the
confirmation mail) happens after the answer has gone, so neither the page nor its timing tells one
address from another. A confirmation mail goes out only when there is something to confirm and the
address is not suppressed for a bounce, a complaint or by an operator; a reader who unsubscribed
comes back only through this double opt-in.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from publisher.channels.email import notice
from publisher.config import Campaign
from publisher.errors import StoreError
from publisher.models import State
from publisher.store.audience import (
    LIFTED_BY_OPT_IN,
    Signup,
    add_signup,
    confirm,
    signup,
    signups_since,
    subscribed_lists,
    suppression_of,
)
from publisher.store.db import iso
from publisher.subscribers import normalise_address
from publisher.text import one_line
from publisher.web.pages import N_
from publisher.web.security import HONEYPOT, RateLimit, client_ip, form_allowed, read_form, truncate_ip
from publisher.web.tokens import new_id

_DAY = timedelta(days=1)

if TYPE_CHECKING:
    from publisher.web.context import Web

log = logging.getLogger("publisher")


def routes(web: "Web") -> list[Route]:
    base = web.base_path
    w = web.settings.web
    per_ip = web.limits.setdefault("signup-ip", RateLimit(w.signups_per_ip_per_hour, 3600))
    hours = int(w.confirm_window.total_seconds() // 3600)

    def form_page(request: Request, campaign: Campaign | None, status: int = 200, problem: str = "") -> Response:
        locale = campaign.locale if campaign else w.locale
        g = web.pages.gettext
        title = g(locale, N_("Subscribe to %(name)s"), name=campaign.title if campaign else web.settings.publisher.name)
        choices = web.choices([campaign] if campaign else None)
        return web.page("subscribe.html", locale, status, title=title, intro=campaign.intro if campaign else "",
                        problem=g(locale, problem) if problem else "", action=f"{base}/subscribe",
                        csrf=web.signer.form(int(web.clock().timestamp())), form_name=campaign.name if campaign else "subscribe",
                        choices=choices, checked={campaign.list.lower()} if campaign else set())

    async def subscribe_page(request: Request) -> Response:
        name = request.path_params.get("campaign")
        campaign = next((c for c in web.campaigns if c.name == name), None)
        if name is not None and campaign is None:
            return web.message(w.locale, N_("Page not found"), N_("This page does not exist."), status=404)
        return form_page(request, campaign)

    async def subscribe_post(request: Request) -> Response:
        form = await read_form(request)
        form_name = one_line((form.get("form") or ["embed"])[0])[:60] or "embed"
        campaign = next((c for c in web.campaigns if c.name == form_name), None)
        locale = campaign.locale if campaign else w.locale
        if not form_allowed(request, form, web.signer, web.clock().timestamp(), web.origins):
            return web.message(locale, N_("Form expired"), N_("This form has expired or comes from another site."
                               " Reload the sign-up page and try again."), status=403)
        ip = client_ip(request.scope) or ""
        if not per_ip.allow(ip):
            return web.message(locale, N_("Too many requests"), N_("Too many sign-ups from your network. Try again in an hour."),
                               status=429)
        try:
            email = normalise_address((form.get("email") or [""])[0])
        except ValueError:
            return form_page(request, campaign, 400, N_("This email address is not valid."))
        if (form.get("consent") or [""])[0] != "yes":
            return form_page(request, campaign, 400, N_("Please tick the box to agree to receive the newsletters."))
        known = {n for n, _ in web.choices()}
        lists = [lst.lower() for lst in form.get("list", []) if lst.lower() in known]
        if not lists and campaign is not None:
            lists = [campaign.list.lower()]
        if not lists:
            return form_page(request, campaign, 400, N_("Choose at least one newsletter."))
        answer = web.message(locale, N_("Check your inbox"), N_("If this address can receive our newsletters, an email is on"
                             " its way to confirm it. Follow its link within %(hours)s hours; nothing is sent before that."),
                             hours=hours)
        if (form.get(HONEYPOT) or [""])[0]:  # a bot: the same answer, and nothing happens
            return answer
        name = one_line((form.get("name") or [""])[0])[:200]
        ip_kept = truncate_ip(ip) if w.truncate_ip else ip
        answer.background = BackgroundTask(start, email, name, tuple(dict.fromkeys(lists)), locale, form_name, ip_kept)
        return answer

    async def start(email: str, name: str, lists: tuple[str, ...], locale: str, form_name: str, ip: str | None) -> None:
        """After the answer has gone: record the sign-up and send its confirmation, when there is one to send."""
        try:
            signup_id = await web.db(plan_signup, email, name, lists, locale, form_name, ip)
        except Exception as exc:  # the same: the answer has gone
            log.warning("serve: a sign-up could not be recorded (%s)", exc, exc_info=log.isEnabledFor(logging.DEBUG))
            if isinstance(exc, StoreError):
                web.store_gone(exc)
            return
        if signup_id is not None:
            await send(f"confirm/{signup_id}", email, locale, "mail/confirm.txt", N_("Confirm your subscription to %(name)s"),
                       confirm_url=f"{web.public_base}/confirm?t={web.signer.confirm(signup_id)}",
                       labels=labels(lists), hours=hours)

    def plan_signup(email: str, name: str, lists: tuple[str, ...], locale: str, form_name: str,
                    ip: str | None) -> str | None:  # in the store's thread
        now = web.clock()
        reason = suppression_of(web.store, email, web.signer.hashed(email))
        if reason is not None and reason not in LIFTED_BY_OPT_IN:
            log.info("serve: a sign-up for a suppressed address (%s) was ignored", reason)
            return None
        if reason is None and set(lists) <= subscribed_lists(web.store, email):
            return None  # nothing new to confirm
        cap = w.confirmations_per_address_per_day
        if cap and signups_since(web.store, email, now - _DAY) >= cap:
            log.info("serve: a sign-up over the daily cap of confirmation mails for one address was ignored")
            return None
        _, version = web.pages.consent(locale)
        signup_id = new_id()
        add_signup(web.store, Signup(signup_id, email, name, lists, locale, form_name, ip, version, iso(now),
                                     iso(now + w.confirm_window), None))
        return signup_id

    async def send(key: str, email: str, locale: str, template: str, subject: str, **values) -> None:
        """A notice through the ledger: claimed in the store's thread, sent from a mail thread, recorded."""
        try:
            await _send(key, email, locale, template, subject, **values)
        except Exception as exc:  # after the answer: nobody to show it to but the log (a busy store, ...)
            log.warning("serve: the sign-up mail %s could not be handled (%s)", key, exc,
                        exc_info=log.isEnabledFor(logging.DEBUG))
            if isinstance(exc, StoreError):
                web.store_gone(exc)

    async def _send(key: str, email: str, locale: str, template: str, subject: str, **values) -> None:
        settings = web.settings
        if not await web.db(notice.claim, settings, web.ledger(), key, email):
            return  # already sent or tried: never twice
        text = web.pages.render(template, locale, **values)
        data = notice.build(settings, email, web.pages.gettext(locale, subject, name=settings.publisher.name), text, web.clock())
        try:
            outcome = await web.mail(notice.deliver, settings, key, email, data)
        except OSError as exc:  # the outbox folder cannot be written
            outcome = (State.UNKNOWN, None, f"not recorded: {exc.strerror or exc}")
        await web.db(notice.finish, settings, web.ledger(), key, email, outcome)

    def labels(lists: tuple[str, ...]) -> list[str]:
        names = dict(web.choices())
        return [names.get(lst, lst) for lst in lists]

    async def confirm_page(request: Request) -> Response:
        token = request.query_params.get("t", "")
        pending = await web.db(still_valid, token)
        if pending is None:
            return refused()
        locale = pending.locale or w.locale
        return web.page("confirm.html", locale, title=web.pages.gettext(locale, N_("Confirm your subscription")),
                        action=f"{base}/confirm?t={token}")

    def still_valid(token: str) -> Signup | None:  # in the store's thread
        signup_id = web.signer.verify_confirm(token) if token else None
        found = signup(web.store, signup_id) if signup_id else None
        if found is None or found.confirmed_at is not None or found.expires_at <= iso(web.clock()):
            return None
        return found

    def refused() -> Response:
        return web.message(w.locale, N_("Invalid link"), N_("This confirmation link is not valid, has expired or was already"
                           " used. Sign up again to get a new one."), status=400)

    async def confirm_post(request: Request) -> Response:
        await read_form(request)
        token = request.query_params.get("t", "")
        signup_id = web.signer.verify_confirm(token) if token else None
        ip = client_ip(request.scope)
        done = await web.db(finish_signup, signup_id, truncate_ip(ip) if w.truncate_ip else ip) if signup_id else None
        if done is None:
            return refused()
        locale = done.locale or w.locale
        answer = web.message(locale, N_("Subscription confirmed"), N_("Thank you: your subscription is confirmed. The next"
                             " newsletter will be in your inbox."))
        if w.welcome:
            prefs = f"{web.public_base}/{web.unsubscribe_path.rsplit('/', 1)[1]}/preferences?t={web.signer.link(done.email)}"
            answer.background = BackgroundTask(send, f"welcome/{done.id}", done.email, locale, "mail/welcome.txt",
                                               N_("Welcome to %(name)s"), labels=labels(done.lists), preferences_url=prefs)
        log.info("serve: a sign-up was confirmed (%s)", ";".join(done.lists))
        return answer

    def finish_signup(signup_id: str, ip: str | None) -> Signup | None:  # in the store's thread
        found = signup(web.store, signup_id)
        hashed = web.signer.hashed(found.email) if found else None
        return confirm(web.store, signup_id, web.clock(), ip, hashed)

    return [Route(f"{base}/subscribe", subscribe_page, methods=["GET", "HEAD"]),
            Route(f"{base}/subscribe", subscribe_post, methods=["POST"]),
            Route(f"{base}/subscribe/{{campaign}}", subscribe_page, methods=["GET", "HEAD"]),
            Route(f"{base}/confirm", confirm_page, methods=["GET", "HEAD"]),
            Route(f"{base}/confirm", confirm_post, methods=["POST"])]

