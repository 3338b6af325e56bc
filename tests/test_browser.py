"""The preview bundle in a real headless Chromium: it loads, lists every edition, and fits a phone."""

from __future__ import annotations

import pytest

from support.browser import chromium, horizontal_overflow, require_chromium, serve, set_viewport

NOW = "2026-11-23T09:00:00+01:00"
CAMPAIGNS = ("endurance", "gt", "imsa", "rallycross")


def _fits(driver) -> bool:
    fits = driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    return fits and horizontal_overflow(driver) <= 0  # and not even under the scrollbar


@pytest.mark.browser
def test_bundle_in_headless_chromium(project):
    require_chromium()
    project.cli("--now", NOW, "fetch", check=True)
    project.cli("--now", NOW, "preview", check=True)
    bundle = project.root / "var" / "preview"
    with serve(bundle) as base, chromium() as driver:
        driver.get(f"{base}/index.html")
        assert driver.title.startswith("Aperçu")
        listed = driver.execute_script(
            "return [...document.querySelectorAll('li.edition')].map(e => e.dataset.campaign + '/' + e.dataset.edition)")
        assert sorted(listed) == [f"{c}/2026-W47" for c in CAMPAIGNS]
        links = driver.execute_script("return [...document.querySelectorAll('li.edition h2 a')].map(a => a.href)")
        assert len(links) == len(CAMPAIGNS)

        set_viewport(driver, 375)  # not "mobile" emulation: it would zoom out to fit a too-wide page
        driver.get(f"{base}/index.html")
        assert driver.execute_script("return window.innerWidth") == 375
        assert _fits(driver), "index.html scrolls sideways at 375 px"
        for link in links:
            driver.get(link)
            assert _fits(driver), f"{link} scrolls sideways at 375 px"
            driver.execute_script("window.scrollTo(0, 0)")
            # The email itself, in the 375 px frame: loaded, and no sideways scroll inside it either.
            email = driver.execute_script("""
                const f = document.querySelector('iframe.mobile');
                const d = f.contentDocument;
                return {text: d.body.innerText, over: d.documentElement.scrollWidth - f.clientWidth};""")
            assert "Se désinscrire" in email["text"]
            assert email["over"] <= 2, f"the email in {link} is wider than the mobile frame by {email['over']} px"
            posts = driver.execute_script("return document.querySelectorAll('li.post').length")
            assert posts >= 3  # at least one post per network
