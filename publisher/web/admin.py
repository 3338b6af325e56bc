"""The newsroom's admin area: log in, review an edition, send a test to yourself, approve, hold, release.

    GET  <base>/admin/login                      the login form (a signed form token: CSRF without a session)
    POST <base>/admin/login                      argon2 check; a user is locked out after repeated failures
    POST <base>/admin/logout
    GET  <base>/admin/                           per campaign: the upcoming edition and the last ones
    GET  <base>/admin/CAMPAIGN/EDITION           the review page: subject, lint, the email at desktop and
                                                 phone width, the text part, the posts in thread order with
                                                 their counted length, the articles picked and left out
    GET  <base>/admin/CAMPAIGN/EDITION/email.html   the email as a sample reader gets it (framed by the page)
    POST <base>/admin/CAMPAIGN/EDITION/ACTION    test | approve | hold | release (editors only)

The page shows the frozen rendering once there is one, else the rendering `send` would freeze now (the
preview's code): what an editor approves is frozen by the approval, the same freeze a send makes, so
the bytes approved are the bytes sent. Every POST needs the session cookie (Secure, HttpOnly,
SameSite=Strict) and the session's own CSRF token; a viewer's POST changes nothing (403).
"""

from __future__ import annotations

import dataclasses
import hmac
import html
import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from publisher import pipeline
from publisher.app import Context
from publisher.channels.email.proof import send_test
from publisher.config import Campaign, parse_duration
from publisher.editions import check_edition, current_edition, left_out, picked, window
from publisher.errors import ConfigError
from publisher.models import Article, LintIssue, RenderedEdition
from publisher.preview import personalised, post_problems, sample_values
from publisher.render.templates import edition_label
from publisher.store.newsroom import Gate, Session, end_session, gate, login_failed, login_succeeded, record_decision, session, user
from publisher.web.security import RateLimit, client_ip, form_allowed, read_form

if TYPE_CHECKING:
    from publisher.web.context import Web

log = logging.getLogger("publisher")
COOKIE = "publisher_admin"
STATIC = Path(__file__).resolve().parent / "static"
HASHER = PasswordHasher()  # argon2id with the library's current parameters; an older hash is upgraded on login
_DUMMY = HASHER.hash("not a password")  # an unknown address costs the same time as a wrong password
PAGE_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-src 'self'; script-src 'self';"
               " form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
# the framed email: its own inline CSS and remote images (as a mail client shows them), no script, framed by us only
EMAIL_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; frame-ancestors 'self'; base-uri 'none'"
ACTIONS = ("approve", "hold", "release")


def hash_password(password: str) -> str:
    """The argon2id hash stored for a user (publisher users add)."""
    return HASHER.hash(password)


@dataclass
class Review:
    """What the review page shows of one edition."""

    campaign: Campaign
    edition_id: str
    label: str
    rendered: RenderedEdition | None
    skip_reason: str | None
    frozen: bool
    gate: Gate
    picked: list[tuple[Article, list[str]]] = field(default_factory=list)
    left_out: list[tuple[Article, str]] = field(default_factory=list)
    problems: list[LintIssue] = field(default_factory=list)


def routes(web: "Web") -> list[Route]:
    base = f"{web.base_path}/admin"
    w = web.settings.web
    lockout, lifetime = parse_duration(w.lockout, "[web].lockout"), parse_duration(w.session_lifetime, "[web].session_lifetime")
    per_ip = web.limits.setdefault("login-ip", RateLimit(max(60, w.login_attempts * 10), 3600))
    by_name = {c.name: c for c in web.campaigns}

    def page(name: str, status: int = 200, **values) -> HTMLResponse:
        body = web.pages.render(f"admin/{name}", w.locale, base=base, **values)
        return HTMLResponse(body, status_code=status, headers={"content-security-policy": PAGE_POLICY})

    def refused(status: int, text: str, me: Session | None = None) -> HTMLResponse:
        return page("message.html", status, title="Refused" if status == 403 else "Not found", text=text, me=me)

    async def current(request: Request) -> Session | None:
        token = request.cookies.get(COOKIE, "")
        return await web.db(session, web.store, token, web.clock()) if token else None

    async def allowed_post(request: Request, editor: bool = True) -> tuple[Session | None, dict[str, list[str]], Response | None]:
        """The session of a POST whose CSRF token matches it (and whose user may act), or the refusal."""
        form = await read_form(request)
        me = await current(request)
        if me is None:
            return None, form, refused(403, "Your session has ended or this request has no session: log in again.")
        token = (form.get("csrf") or [""])[0]
        if not hmac.compare_digest(token.encode(), me.csrf.encode()):
            return me, form, refused(403, "This form has expired or comes from another page: reload the page and try again.", me)
        if editor and me.role != "editor":
            return me, form, refused(403, "Only an editor can do this; your role is viewer (preview only).", me)
        return me, form, None

    # -- login --------------------------------------------------------------------------------

    def login_page(status: int = 200, problem: str = "") -> HTMLResponse:
        return page("login.html", status, title="Log in", problem=problem, me=None,
                    csrf=web.signer.form(int(web.clock().timestamp())))

    async def login_get(request: Request) -> Response:
        return login_page()

    async def login_post(request: Request) -> Response:
        form = await read_form(request)
        if not form_allowed(request, form, web.signer, web.clock().timestamp(), ()):
            return login_page(403, "This form has expired: try again.")
        if not per_ip.allow(client_ip(request.scope) or ""):
            return login_page(429, "Too many attempts from your network: try again in an hour.")
        email = (form.get("email") or [""])[0].strip()
        password = (form.get("password") or [""])[0]
        found = await web.db(user, web.store, email) if email else None
        now = web.clock()
        ok = await web.mail(_verify, found.password if found else _DUMMY, password)
        if found is not None and found.locked_until is not None and found.locked_until > now:
            log.info("serve: admin login refused: a locked-out user")
            return login_page(403, f"Too many failed attempts: this account is locked until"
                                   f" {found.locked_until:%H:%M} UTC.")
        if found is None or not ok:
            if found is not None:
                await web.db(login_failed, web.store, email, now, w.login_attempts, lockout)
            return login_page(403, f"Wrong address or password. After {w.login_attempts} failures in a row the account"
                                   f" is locked for {w.lockout}.")
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        rehash = HASHER.hash(password) if HASHER.check_needs_rehash(found.password) else None
        await web.db(login_succeeded, web.store, email, token, csrf, now, lifetime, rehash)
        answer = RedirectResponse(f"{base}/", status_code=303)
        answer.set_cookie(COOKIE, token, max_age=int(lifetime.total_seconds()), path=base, secure=w.secure_cookies,
                          httponly=True, samesite="strict")
        return answer

    async def logout(request: Request) -> Response:
        me, form, refusal = await allowed_post(request, editor=False)
        if refusal:
            return refusal
        await web.db(end_session, web.store, request.cookies.get(COOKIE, ""))
        answer = RedirectResponse(f"{base}/login", status_code=303)
        answer.delete_cookie(COOKIE, path=base, secure=w.secure_cookies, httponly=True, samesite="strict")
        return answer

    # -- review -------------------------------------------------------------------------------

    async def index(request: Request) -> Response:
        me = await current(request)
        if me is None:
            return RedirectResponse(f"{base}/login", status_code=303)
        rows = await web.db(overview)
        return page("index.html", title="Newsroom", me=me, rows=rows)

    def overview() -> list[tuple[Campaign, str, list]]:  # in the store's thread
        now = web.clock()
        out = []
        for c in web.campaigns:
            upcoming = current_edition(c, now, web.settings.schedule.lateness_window)
            records = [r for r in web.store.edition_records(c.name) if r.edition_id != upcoming][-5:]
            out.append((c, upcoming, list(reversed(records))))
        return out

    def target(request: Request) -> tuple[Campaign | None, str]:
        c = by_name.get(request.path_params["campaign"])
        eid = request.path_params["edition"]
        try:
            if c is not None:
                check_edition(c, eid)
        except ConfigError:
            return None, eid
        return c, eid

    def review(c: Campaign, eid: str) -> Review:  # in the store's thread: reads articles, editions, approvals
        ctx = Context(web.settings, web.clock(), clock=web.clock, store=web.store)
        g = gate(web.store, c.name, eid)
        plan = pipeline.plan(ctx, c, eid)
        done = pipeline.frozen(ctx, c, eid)
        rendered = done if done is not None else (None if plan.skip_reason else pipeline.render(ctx, c, plan))
        start, end = window(eid, c.tz)
        r = Review(c, eid, edition_label(plan.edition, c), rendered, None if done else plan.skip_reason, done is not None, g,
                   left_out=left_out(c, plan, web.store.articles_between(start, end), web.settings.series))
        if rendered is not None:
            r.picked = picked(c, dataclasses.replace(plan, edition=rendered.edition), web.settings.series)
            r.problems = list(rendered.lint) + post_problems(rendered)
        return r

    async def edition_page(request: Request) -> Response:
        me = await current(request)
        if me is None:
            return RedirectResponse(f"{base}/login", status_code=303)
        c, eid = target(request)
        if c is None:
            return refused(404, "No such campaign or edition.", me)
        return await show(me, c, eid)

    async def show(me: Session, c: Campaign, eid: str, notice: str = "") -> Response:
        r = await web.db(review, c, eid)
        text = personalised(r.rendered.text, sample_values(web.settings)) if r.rendered else ""
        return page("edition.html", title=f"{c.title} · {eid}", me=me, r=r, text=text, notice=notice,
                    size_kb=len(r.rendered.html.encode()) / 1024 if r.rendered else 0)

    async def email_frame(request: Request) -> Response:
        me = await current(request)
        c, eid = target(request)
        if me is None or c is None:
            return Response(status_code=404)
        r = await web.db(review, c, eid)
        if r.rendered is None:
            return Response(status_code=404)
        body = personalised(r.rendered.html, sample_values(web.settings), lambda v: html.escape(v, quote=True))
        return HTMLResponse(body, headers={"content-security-policy": EMAIL_POLICY})

    async def act(request: Request) -> Response:
        me, form, refusal = await allowed_post(request)
        if refusal:
            return refusal
        c, eid = target(request)
        action = request.path_params["action"]
        if c is None or action not in (*ACTIONS, "test"):
            return refused(404, "No such campaign, edition or action.", me)
        if action == "test":
            r = await web.db(review, c, eid)
            if r.rendered is None:
                return refused(404, f"Nothing to test: {r.skip_reason}.", me)
            lines = await web.mail(lambda: send_test(web.settings, c, r.rendered, [me.email], now=web.clock()))
            done = "; ".join(line for _, line in lines)
        else:
            done = await web.db(decide, c, eid, action, me.email)
        log.info("serve: admin %s on %s/%s by an editor", action, c.name, eid)
        return await show(me, c, eid, done)  # the page again, saying what was done

    def decide(c: Campaign, eid: str, action: str, who: str) -> str:  # in the store's thread
        now = web.clock()
        if action == "approve":
            ctx = Context(web.settings, now, clock=web.clock, store=web.store)
            rendered, skip = pipeline.prepare(ctx, c, eid, record_skip=False)  # the freeze a send makes
            if rendered is None:
                return f"not approved: {skip}"
            record_decision(web.store, c.name, eid, action, who, now)
            return f"approved by {who}: content {rendered.content_hash[:12]} frozen; it goes out at its slot"
        record_decision(web.store, c.name, eid, action, who, now)
        return f"{'held' if action == 'hold' else 'released'} by {who}"

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ("chart.umd.min.js", "dashboard.js"):
            return Response(status_code=404)
        return FileResponse(STATIC / name, media_type="text/javascript")

    return [Route(f"{base}/login", login_get, methods=["GET", "HEAD"]),
            Route(f"{base}/login", login_post, methods=["POST"]),
            Route(f"{base}/logout", logout, methods=["POST"]),
            Route(f"{base}/", index, methods=["GET", "HEAD"]),
            Route(f"{base}/static/{{name}}", static, methods=["GET", "HEAD"]),
            Route(f"{base}/{{campaign}}/{{edition}}", edition_page, methods=["GET", "HEAD"]),
            Route(f"{base}/{{campaign}}/{{edition}}/email.html", email_frame, methods=["GET", "HEAD"]),
            Route(f"{base}/{{campaign}}/{{edition}}/{{action}}", act, methods=["POST"])]


def _verify(stored: str, password: str) -> bool:
    try:
        return HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False

