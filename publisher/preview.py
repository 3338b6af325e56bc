"""`publisher preview`: render editions into a review bundle, through the same renderer `send` uses.

Preview calls `pipeline.plan` and `pipeline.render` only: no freeze, no ledger, no subscribers, no
channel objects, so it cannot send anything. The bundle it writes:

    <out>/index.html                          campaigns and editions (skipped ones with the reason)
    <out>/<campaign>/<edition>/index.html     the email at desktop and mobile width, text, posts, lint
    <out>/<campaign>/<edition>/email.html     the HTML part exactly as it will be sent
    <out>/<campaign>/<edition>/email.txt      the text part
    <out>/<campaign>/<edition>/email.eml      the raw message as a sample recipient gets it
    <out>/<campaign>/<edition>/posts.json     the posts per network, in thread order
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import jinja2

from publisher.config import Campaign
from publisher.editions import current_edition, parse_edition_id
from publisher.errors import ConfigError, FeedError, LintError
from publisher.models import LintIssue, RenderedEdition
from publisher.render import STOCK_TEMPLATES


@dataclass
class Entry:
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


def command_preview(ctx, args) -> int:
    """Render the current (or named) edition of every (or the named) campaign into a review bundle."""
    from publisher import pipeline
    from publisher.config import load_campaigns
    from publisher.render import edition_label

    if args.edition:
        parse_edition_id(args.edition)
    campaigns = load_campaigns(ctx.settings, args.campaign or ())
    out = Path(args.out) if args.out else ctx.settings.path(ctx.settings.publisher.preview_dir)
    shown = f"{args.out} (--out)" if args.out else f"{out} ([publisher].preview_dir)"
    _bundle_folder(out, shown)  # before rendering: a typo in --out should cost nothing
    articles = _articles(ctx, args.feed)
    entries: list[Entry] = []
    for campaign in campaigns:
        eid = args.edition or current_edition(campaign, ctx.now, ctx.settings.schedule.lateness_window)
        plan = pipeline.plan(ctx, campaign, eid, articles=articles)
        entry = Entry(campaign, eid, label=edition_label(plan.edition, campaign))
        if plan.skip_reason:
            entry.skip_reason = plan.skip_reason
        else:
            entry.rendered = pipeline.render(ctx, campaign, plan)
            entry.problems = list(entry.rendered.lint) + _post_problems(entry.rendered)
        entries.append(entry)
    try:
        write_bundle(out, entries, ctx.settings, ctx.now)
    except OSError as exc:  # disk full, permissions changed under us
        raise ConfigError(f"preview: cannot write the bundle in {out} ({exc.strerror}: {exc.filename})",
                          hint="free some space or pick another folder with --out DIR, then rerun 'publisher preview'") from None
    for e in entries:
        print(_line(e, out))
    print(f"preview bundle: {out / 'index.html'}")
    problems = sum(len(e.problems) for e in entries)
    if args.strict and problems:
        worst = next(f"{e.path}: {p.message}" for e in entries for p in e.problems)
        raise LintError(f"preview --strict: {problems} lint problem(s), first: {worst}",
                        hint=f"see {out / 'index.html'}, fix the templates or campaign, then rerun 'publisher preview --strict'")
    return 0


def _bundle_folder(out: Path, shown: str) -> None:
    """Create the bundle folder, or fail naming it: a file in the way, a read-only or missing parent."""
    hint = "pass --out DIR with a folder you can write (it is created if missing), then rerun 'publisher preview'"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"preview: {shown} is a file, not a folder", hint=hint)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"preview: cannot create the bundle folder {shown}: {exc.strerror}", hint=hint) from None
    if not os.access(out, os.W_OK):
        raise ConfigError(f"preview: the bundle folder {shown} is not writable", hint=hint)


def _articles(ctx, feeds):
    """Articles from `--feed` sources (read, never stored), or None to read the store."""
    if feeds:
        from publisher.feeds import read_sources

        articles, results = read_sources(feeds, ctx.settings.feeds, now=ctx.now, progress=ctx.progress)
        for r in results:
            print(r.line())
        if not any(r.ok for r in results):
            raise FeedError("preview --feed: no source could be read", hint="check the paths or URLs given to --feed")
        return articles
    if ctx.store.article_count() == 0:
        raise FeedError(f"the store {ctx.settings.publisher.store} has no articles yet",
                        hint="run 'publisher fetch' first, or pass --feed URL_OR_PATH")
    return None


def _post_problems(rendered: RenderedEdition) -> list[LintIssue]:
    return [LintIssue("post-length", f"{network} post {p.position + 1} counts {p.length}, over its limit of {p.limit}")
            for network, posts in rendered.posts.items() for p in posts if p.length > p.limit]


def _line(e: Entry, out: Path) -> str:
    head = f"{e.campaign.name} {e.edition_id}"
    if e.rendered is None:
        return f"{head}: skipped ({e.skip_reason})"
    r = e.rendered
    posts = ", ".join(f"{len(p)} {n}" for n, p in r.posts.items()) or "no"
    lint = f"{len(e.problems)} lint problem(s)" if e.problems else "lint clean"
    size = len(r.html.encode("utf-8")) / 1024
    return (f"{head}: {len(r.edition.articles)} articles, {size:.0f} KB HTML, {posts} posts, {lint} "
            f"-> {out / e.path / 'index.html'}")


# -- the bundle --------------------------------------------------------------------------------------


def _environment() -> jinja2.Environment:
    # The bundle's own pages: stock only, autoescaped (feed text shows up in them too).
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(STOCK_TEMPLATES / "preview")),
                              autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def write_bundle(out: Path, entries: list[Entry], settings, now: datetime) -> None:
    """Write the review bundle for `entries` into `out` (files replaced atomically, others left alone)."""
    from publisher.message import preview_eml

    env = _environment()
    out.mkdir(parents=True, exist_ok=True)
    for e in entries:
        if e.rendered is None:
            continue
        folder = out / e.campaign.name / e.edition_id
        r = e.rendered
        _write(folder / "email.html", r.html.encode("utf-8"))
        _write(folder / "email.txt", r.text.encode("utf-8"))
        _write(folder / "email.eml", preview_eml(r, e.campaign, settings, now))
        posts = {n: [{"position": p.position, "text": p.text, "length": p.length, "limit": p.limit,
                      "links": list(p.links), "image": p.image, "card": p.card, "language": p.language}
                     for p in ps] for n, ps in r.posts.items()}
        _write(folder / "posts.json", json.dumps(posts, ensure_ascii=False, indent=2).encode("utf-8"))
        page = env.get_template("edition.html").render(entry=e, r=r, size_kb=len(r.html.encode("utf-8")) / 1024,
                                                       publisher_name=settings.publisher.name, now=now)
        _write(folder / "index.html", page.encode("utf-8"))
    index = env.get_template("index.html").render(entries=entries, publisher_name=settings.publisher.name, now=now)
    _write(out / "index.html", index.encode("utf-8"))


_UMASK = os.umask(0o022)  # read the process umask (only a set returns it), then put it back
os.umask(_UMASK)


def _write(path: Path, data: bytes) -> None:
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
