"""Preview: render editions into a review bundle, through the same renderer `send` uses.

Preview calls `pipeline.plan` and `pipeline.render` only: no freeze, no ledger, no subscribers, no
channel objects; `cli/preview.py` prints what it wrote. The bundle:

    <out>/index.html                          campaigns and editions (skipped ones with the reason)
    <out>/<campaign>/<edition>/index.html     the email at desktop and mobile width, text, posts, lint
    <out>/<campaign>/<edition>/email.html     the HTML part exactly as it will be sent (with its %%…%% slots)
    <out>/<campaign>/<edition>/sample.html    the same, as a sample reader gets it (what the page shows)
    <out>/<campaign>/<edition>/email.txt      the text part
    <out>/<campaign>/<edition>/email.eml      the raw message as a sample recipient gets it
    <out>/<campaign>/<edition>/posts.json     the posts per network, in thread order
"""

from __future__ import annotations

import html
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import jinja2

from publisher import pipeline
from publisher.channels.email.message import NAME_TOKEN, SAMPLE_EMAIL, SAMPLE_NAME, preferences_link, preview_eml, unsubscribe_link
from publisher.config import Campaign
from publisher.editions import current_edition
from publisher.models import EMAIL_TOKEN, PREFERENCES_TOKEN, UNSUBSCRIBE_TOKEN, Article, LintIssue, RenderedEdition
from publisher.render.overflow import PHONE_WIDTH, BrowserMissing, page_widths
from publisher.render.templates import STOCK_TEMPLATES, edition_label


@dataclass
class BundleEntry:
    """One campaign's edition in the bundle: rendered, or skipped with the reason."""

    campaign: Campaign
    edition_id: str
    label: str = ""
    rendered: RenderedEdition | None = None
    skip_reason: str | None = None
    problems: list[LintIssue] = field(default_factory=list)  # email lint plus posts over their limit

    @property
    def path(self) -> str:
        return f"{self.campaign.name}/{self.edition_id}"


def render_entries(ctx, campaigns: list[Campaign], edition_id: str | None, articles: list[Article] | None) -> list[BundleEntry]:
    """Plan and render the current (or named) edition of each campaign; a thin week is a skipped entry."""
    found: list[BundleEntry] = []
    for campaign in campaigns:
        eid = edition_id or current_edition(campaign, ctx.now, ctx.settings.schedule.lateness_window)
        plan = pipeline.plan(ctx, campaign, eid, articles=articles)
        entry = BundleEntry(campaign, eid, label=edition_label(plan.edition, campaign))
        if plan.skip_reason:
            entry.skip_reason = plan.skip_reason
        else:
            entry.rendered = pipeline.render(ctx, campaign, plan)
            entry.problems = list(entry.rendered.lint) + post_problems(entry.rendered)
        found.append(entry)
    return found


def check_phone_layout(entries: list[BundleEntry]) -> str | None:
    """Lay every rendered email out at 375 px without its <style> (as SFR and La Poste webmails show it) in
    headless Chromium; one that scrolls sideways gets a `mobile-overflow` problem. Returns why the check
    could not run (no Chromium), else None."""
    rendered = {e.path: e for e in entries if e.rendered is not None}
    try:
        widths = page_widths({path: e.rendered.html for path, e in rendered.items()})
    except (BrowserMissing, OSError, subprocess.SubprocessError) as exc:
        return f"phone layout not checked: {exc}"
    for path, width in widths.items():
        if width > PHONE_WIDTH:
            rendered[path].problems.append(LintIssue(
                "mobile-overflow", f"without <style> (SFR, La Poste webmails), a {PHONE_WIDTH} px screen scrolls"
                f" sideways: the email is {width} px wide; use width:100% with max-width on tables and images"))
    return None


def sample_values(settings) -> dict[str, str]:
    """The personal slots filled in for the sample reader the preview shows."""
    link = unsubscribe_link(settings, "EXEMPLE-DE-JETON")
    return {UNSUBSCRIBE_TOKEN: link, PREFERENCES_TOKEN: preferences_link(settings, "EXEMPLE-DE-JETON"), EMAIL_TOKEN: SAMPLE_EMAIL,
            NAME_TOKEN: SAMPLE_NAME}


def personalised(text: str, values: dict[str, str], escape=lambda v: v) -> str:
    """`text` with each personal slot replaced by its (escaped) sample value."""
    for token, value in values.items():
        text = text.replace(token, escape(value))
    return text


def post_problems(rendered: RenderedEdition) -> list[LintIssue]:
    """Posts over their network's limit, as lint problems."""
    return [LintIssue("post-length", f"{network} post {p.position + 1} counts {p.length}, over its limit of {p.limit}")
            for network, posts in rendered.posts.items() for p in posts if p.length > p.limit]


# -- the bundle --------------------------------------------------------------------------------------


def _environment() -> jinja2.Environment:
    # The bundle's own pages: stock only, autoescaped (feed text shows up in them too).
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(STOCK_TEMPLATES / "preview")),
                              autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def write_bundle(out: Path, entries: list[BundleEntry], settings, now: datetime) -> None:
    """Write the review bundle for `entries` into `out` (files replaced atomically, others left alone)."""
    env = _environment()
    out.mkdir(parents=True, exist_ok=True)
    sample = sample_values(settings)
    for e in entries:
        if e.rendered is None:
            continue
        folder = out / e.campaign.name / e.edition_id
        r = e.rendered
        write_file(folder / "email.html", r.html.encode("utf-8"))
        write_file(folder / "email.txt", r.text.encode("utf-8"))
        write_file(folder / "sample.html", personalised(r.html, sample, lambda v: html.escape(v, quote=True)).encode("utf-8"))
        write_file(folder / "email.eml", preview_eml(r, e.campaign, settings, now))
        posts = {n: [{"position": p.position, "text": p.text, "length": p.length, "limit": p.limit,
                      "links": list(p.links), "image": p.image, "card": p.card, "language": p.language}
                     for p in ps] for n, ps in r.posts.items()}
        write_file(folder / "posts.json", json.dumps(posts, ensure_ascii=False, indent=2).encode("utf-8"))
        page = env.get_template("edition.html").render(entry=e, r=r, text=personalised(r.text, sample), size_kb=len(r.html.encode("utf-8")) / 1024,
                                                       publisher_name=settings.publisher.name, now=now)
        write_file(folder / "index.html", page.encode("utf-8"))
    index = env.get_template("index.html").render(entries=entries, publisher_name=settings.publisher.name, now=now)
    write_file(out / "index.html", index.encode("utf-8"))


_UMASK = os.umask(0o022)  # read the process umask (only a set returns it), then put it back
os.umask(_UMASK)


def write_file(path: Path, data: bytes) -> None:
    """Write-then-rename, so a reviewer never opens half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a bundle is meant to be shared for review
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
