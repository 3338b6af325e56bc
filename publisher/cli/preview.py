"""`publisher preview`: check the bundle folder, render the editions, write the bundle, print a line each."""

from __future__ import annotations

import os
from pathlib import Path

from publisher.app import Context
from publisher.config import load_campaigns
from publisher.editions import parse_edition_id
from publisher.errors import ConfigError, FeedError, LintError
from publisher.ingest.feeds import read_sources
from publisher.preview import BundleEntry, check_phone_layout, render_entries, write_bundle


def command_preview(ctx: Context, args) -> int:
    """Render the current (or named) edition of every (or the named) campaign into a review bundle."""
    if args.edition:
        parse_edition_id(args.edition)
    campaigns = load_campaigns(ctx.settings, args.campaign or ())
    out = Path(args.out) if args.out else ctx.settings.path(ctx.settings.publisher.preview_dir)
    shown = f"{args.out} (--out)" if args.out else f"{out} ([publisher].preview_dir)"
    _bundle_folder(out, shown)  # before rendering: a typo in --out should cost nothing
    found = render_entries(ctx, campaigns, args.edition, _articles(ctx, args.feed))
    unchecked = check_phone_layout(found)
    if unchecked:
        print(unchecked)
    try:
        write_bundle(out, found, ctx.settings, ctx.now)
    except OSError as exc:  # disk full, permissions changed under us
        raise ConfigError(f"preview: cannot write the bundle in {out} ({exc.strerror}: {exc.filename})",
                          hint="free some space or pick another folder with --out DIR, then rerun 'publisher preview'") from None
    for e in found:
        print(_line(e, out))
    print(f"preview bundle: {out / 'index.html'}")
    problems = sum(len(e.problems) for e in found)
    if args.strict and problems:
        worst = next(f"{e.path}: {p.message}" for e in found for p in e.problems)
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


def _line(e: BundleEntry, out: Path) -> str:
    head = f"{e.campaign.name} {e.edition_id}"
    if e.rendered is None:
        return f"{head}: skipped ({e.skip_reason})"
    r = e.rendered
    posts = ", ".join(f"{len(p)} {n}" for n, p in r.posts.items()) or "no"
    lint = f"{len(e.problems)} lint problem(s)" if e.problems else "lint clean"
    size = len(r.html.encode("utf-8")) / 1024
    return (f"{head}: {len(r.edition.articles)} articles, {size:.0f} KB HTML, {posts} posts, {lint} "
            f"-> {out / e.path / 'index.html'}")
