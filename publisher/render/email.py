"""The email and the posts of an edition: Edition + Campaign -> RenderedEdition (subject, preheader, HTML, text, posts, lint).

The templates and their layers are in templates.py. premailer inlines the CSS once per edition. Rules it
cannot inline (`@media`) stay in a <style> block with their `!important`, and it never fetches remote CSS
(`allow_network=False`). Posts are rendered for every social channel of the campaign, with the length
rule and limit that channel's module declares (render/posts.py asks the registry).
"""

from __future__ import annotations

import dataclasses
import logging
import re

import jinja2
from premailer import Premailer

from publisher.channels import registry
from publisher.config import Campaign, Settings
from publisher.editions import is_alert_id
from publisher.errors import ConfigError
from publisher.text import one_line
from publisher.models import Edition, RenderedEdition
from publisher.render.lint import lint_email
from publisher.render.posts import compose
from publisher.render.templates import (
    USER_ERRORS,
    base_context,
    defuse,
    describe,
    environment,
    make_items,
    render_template,
    string_template,
)

log = logging.getLogger("publisher")


class Renderer:
    """Renders editions with the template layers of `settings` (and each campaign's own folder)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._envs: dict[str | None, jinja2.Environment] = {}

    def environment(self, campaign: Campaign | None = None) -> jinja2.Environment:
        """The (cached) Jinja environment for a campaign's template layers."""
        key = campaign.templates if campaign is not None else None
        if key not in self._envs:
            self._envs[key] = environment(self.settings, campaign)
        return self._envs[key]

    def render(self, edition: Edition, campaign: Campaign) -> RenderedEdition:
        """Subject, preheader, HTML (CSS inlined once), text part, posts per social network, lint."""
        if is_alert_id(edition.id):  # one article, alone: its own subject, and one post of it per network
            campaign = dataclasses.replace(campaign, subject=campaign.alerts.subject, preheader=campaign.alerts.preheader,
                                           social=dataclasses.replace(campaign.social, mode="per_article"))
        env = self.environment(campaign)
        ctx = self._context(env, edition, campaign)
        html = inline_css(render_template(env, "email.html", ctx, campaign))
        text = render_template(env, "email.txt", ctx, campaign)
        subject, preheader = ctx["subject"], ctx["preheader"]
        posts = {}
        for name in campaign.channels:
            spec = registry.get(name)
            if spec.posts is not None:  # a social channel: posts with the rules its module declares
                posts[spec.network] = compose(edition, campaign, spec.network, self.settings, env=env)
        return RenderedEdition(edition=edition, subject=subject, preheader=preheader, html=html, text=text,
                               posts=posts, lint=lint_email(html, text))

    def html_source(self, edition: Edition, campaign: Campaign) -> str:
        """The email HTML before CSS inlining (for benchmarks and template debugging)."""
        env = self.environment(campaign)
        return render_template(env, "email.html", self._context(env, edition, campaign), campaign)

    def _context(self, env: jinja2.Environment, edition: Edition, campaign: Campaign) -> dict:
        ctx = base_context(edition, campaign, self.settings)
        items = make_items(edition, campaign, self.settings)
        ctx.update(items=items, lead=items[0] if items else None, others=items[1:])
        ctx["subject"] = self._string(env, campaign.subject, ctx, campaign, "subject")
        ctx["preheader"] = self._string(env, campaign.preheader, ctx, campaign, "preheader")
        return ctx

    def _string(self, env: jinja2.Environment, source: str, ctx: dict, campaign: Campaign, what: str) -> str:
        try:
            return defuse(one_line(string_template(env, source).render(ctx)))
        except (jinja2.TemplateError, *USER_ERRORS) as exc:  # `{{ 1 / 0 }}` is a template mistake too
            raise ConfigError(f"{campaign.source or campaign.name}: {what}: {describe(exc)}",
                              hint=f"fix the {what} template, then rerun 'publisher preview --campaign {campaign.name}'") from None


_STYLE_BLOCK = re.compile(r"(<style\b[^>]*>)(.*?)(</style>)", re.IGNORECASE | re.DOTALL)
_IMPORT = re.compile(r"@import\b[^;]*;?", re.IGNORECASE)


def _drop_imports(html: str) -> str:
    # cssutils (under premailer) fetches @import URLs itself, whatever allow_network says.
    def strip(m: re.Match) -> str:
        if not _IMPORT.search(m.group(2)):
            return m.group(0)
        log.warning("template: @import removed from a <style> block (remote CSS is never fetched)")
        return m.group(1) + _IMPORT.sub("", m.group(2)) + m.group(3)

    return _STYLE_BLOCK.sub(strip, html)


def inline_css(html: str) -> str:
    """Inline the CSS of `html` with premailer; keep @media (and !important) in <style>; no network."""
    return Premailer(
        _drop_imports(html),
        keep_style_tags=False,  # only what cannot be inlined (@media) stays in a <style> block
        strip_important=False,  # @media overrides need their !important
        allow_network=False,  # never fetch a remote stylesheet
        allow_loading_external_files=False,
        disable_validation=True,
        cssutils_logging_level=logging.CRITICAL,  # mso-* and other mail-client hacks are not errors
        remove_classes=False,  # the kept @media rules select on classes
        disable_link_rewrites=True,
        align_floating_images=False,
        # Keep the pixel width="" attributes Outlook needs; premailer would copy "width:100%" over them.
        disable_basic_attributes=["width", "height"],
    ).transform()
