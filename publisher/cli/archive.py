"""`publisher archive --out DIR`: the public archive as static files, for any web server or a WordPress page."""

from __future__ import annotations

from pathlib import Path

from publisher.app import Context
from publisher.config import load_campaigns
from publisher.preview import write_file
from publisher.web.archive import site
from publisher.web.pages import Pages


def command_archive(ctx: Context, args) -> int:
    """Write every archived edition, each campaign's index and Atom feed, and the index under --out."""
    out = Path(args.out)
    campaigns = load_campaigns(ctx.settings)
    files = site(ctx.settings, Pages(ctx.settings), ctx.store, campaigns)
    for path, data in files.items():
        write_file(out / path, data)
    editions = sum(1 for p in files if p.count("/") == 2)
    print(f"archive: {editions} edition(s) of {len(campaigns)} campaign(s) written to {out}/ (open {out / 'index.html'})")
    return 0
