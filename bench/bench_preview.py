"""Benchmark: preview of every campaign for one week, next to premailer alone on the same editions.

    .venv/bin/python bench/bench_preview.py [--repeat N]

Works on a throw-away copy of the repository's settings, campaigns and sample feeds (fetched into a
temporary store once). Each round renders the current week of every campaign; the baseline is the time
premailer alone spends inlining the same editions' HTML (taken before inlining), in the same run.
Rows:

- premailer alone: `inline_css` on each edition's template output (the floor: we inline once per edition)
- render: plan + templates + premailer + posts for three networks + lint, through `pipeline.render`
- preview: render + the raw .eml + writing the whole review bundle, as `publisher preview` does
- phone layout check: every edition laid out at 375 px without <style> in one headless Chromium (what
  `publisher preview` adds to the above; skipped when Chromium is not installed)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from publisher import pipeline  # noqa: E402
from publisher.app import Context  # noqa: E402
from publisher.config import load_campaigns  # noqa: E402
from publisher.editions import current_edition  # noqa: E402
from publisher.preview import BundleEntry, check_phone_layout, write_bundle  # noqa: E402
from publisher.render.overflow import chromium_path  # noqa: E402
from publisher.progress import Progress  # noqa: E402
from publisher.render.email import Renderer, inline_css  # noqa: E402
from publisher.render.templates import edition_label  # noqa: E402

NOW = datetime.fromisoformat("2026-11-23T09:00:00+01:00")


def _median(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="rounds per measurement (median reported)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-preview-"))
    try:
        for name in ("campaigns", "samples", "templates"):
            if (REPO / name).exists():
                shutil.copytree(REPO / name, work / name)
        shutil.copy(REPO / "settings.toml", work / "settings.toml")
        ctx = Context.open(work / "settings.toml", now=NOW, fixed_now=True)
        ctx.progress = Progress(quiet=True)
        pipeline.fetch(ctx, [str(work / s) for s in ctx.settings.feeds.sources])
        campaigns = load_campaigns(ctx.settings)
        plans = []
        for c in campaigns:
            p = pipeline.plan(ctx, c, current_edition(c, NOW, ctx.settings.schedule.lateness_window))
            if not p.skip_reason:
                plans.append((c, p))
        renderer = Renderer(ctx.settings)
        sources = [renderer.html_source(p.edition, c) for c, p in plans]
        out = work / "bundle"

        def premailer_only():
            for html in sources:
                inline_css(html)

        def render_all():
            return [(c, p, pipeline.render(ctx, c, p)) for c, p in plans]

        def preview_all():
            entries = []
            for c, p, r in render_all():
                entries.append(BundleEntry(c, p.edition.id, label=edition_label(p.edition, c), rendered=r,
                                     problems=list(r.lint)))
            write_bundle(out, entries, ctx.settings, NOW)
            return entries

        entries = preview_all()

        def phone_check():
            assert check_phone_layout(entries) is None

        # preview_all() above was the warm-up: imports, template compilation, CSS parse caches
        base = _median(premailer_only, args.repeat)
        rows = [("premailer alone (baseline)", base), ("render (pipeline.render)", _median(render_all, args.repeat)),
                ("preview (render + .eml + bundle)", _median(preview_all, args.repeat))]
        if chromium_path():
            rows.append(("phone layout check (Chromium)", _median(phone_check, max(3, args.repeat // 3))))
        articles = sum(len(p.edition.articles) for _, p in plans)
        sizes = [len(inline_css(h).encode()) / 1024 for h in sources]
        print(f"{len(plans)} editions of week {plans[0][1].edition.id if plans else '-'}, {articles} articles, "
              f"HTML {min(sizes):.0f}-{max(sizes):.0f} KB; median of {args.repeat} rounds")
        print(f"{'stage':<36} {'ms/week':>10} {'ms/edition':>11} {'ratio':>7}")
        for name, t in rows:
            print(f"{name:<36} {t * 1000:>10.1f} {t * 1000 / max(1, len(plans)):>11.1f} {t / base:>7.2f}")
        ctx.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
