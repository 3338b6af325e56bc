"""Does an email scroll sideways on a phone in a webmail that drops every <style>? Asked of headless Chromium.

SFR and La Poste webmails remove <style> blocks and the <body> attributes and ignore @media: an email
must hold with its inline styles alone. Each email, stripped that way, is laid out in a 375 px wide
frame (a phone's width; a frame does not zoom out as a phone's page would) and we read how wide its
page became. One Chromium process measures every email of a preview run; it reaches no network (every
host name resolves to nothing, so remote images fail at once and their width=/height= attributes
size them). This is preview-only: nothing here runs on the send path.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

PHONE_WIDTH = 375
_STYLE = re.compile(r"<style\b[^>]*>.*?</style\s*>", re.I | re.S)
_BODY = re.compile(r"<body\b[^>]*>", re.I)
_RESULT = re.compile(r'<pre id="result">(.*?)</pre>', re.S)
_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class BrowserMissing(Exception):
    """No Chromium to lay the emails out with."""


def without_style(email_html: str) -> str:
    """The email as SFR and La Poste webmails show it: no <style> block, no attributes on <body>."""
    return _BODY.sub("<body>", _STYLE.sub("", email_html))


def chromium_path() -> str | None:
    """The Chromium (or Chrome) executable on PATH, if any."""
    for name in _CANDIDATES:
        if found := shutil.which(name):
            return found
    return None


def page_widths(emails: dict[str, str], width: int = PHONE_WIDTH, timeout: float = 120) -> dict[str, int]:
    """For each email (name -> HTML), the width in CSS pixels of its page laid out `width` px wide without
    <style>; wider than `width` means the reader scrolls sideways. Raises BrowserMissing."""
    if not emails:
        return {}
    binary = chromium_path()
    if binary is None:
        raise BrowserMissing("Chromium not found on PATH (Debian: apt-get install chromium)")
    frames = "\n".join(
        f'<iframe id="f{i}" width="{width}" height="800" scrolling="no" style="border:0;display:block" '
        f'srcdoc="{html.escape(without_style(source), quote=True)}"></iframe>'
        for i, source in enumerate(emails.values()))
    host = (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body>{frames}"
            "<pre id=\"result\"></pre><script>window.addEventListener('load', function () {"
            " var out = {}; document.querySelectorAll('iframe').forEach(function (f) {"
            " var d = f.contentDocument; out[f.id] = Math.max(d.documentElement.scrollWidth,"
            " d.body ? d.body.scrollWidth : 0); });"
            " document.getElementById('result').textContent = JSON.stringify(out); });</script></body></html>")
    with tempfile.TemporaryDirectory(prefix="publisher-overflow-") as tmp:
        page = Path(tmp) / "emails.html"
        page.write_text(host, encoding="utf-8")
        profile = Path(tmp) / "profile"
        proc = subprocess.run(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}",
             "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=10000",
             "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=timeout, check=False)
    found = _RESULT.search(proc.stdout)
    if proc.returncode != 0 or not found or not found.group(1).strip():
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise BrowserMissing(f"Chromium could not lay the emails out ({binary} exited {proc.returncode}: {tail[:200]})")
    widths = json.loads(html.unescape(found.group(1)))
    return {name: int(widths[f"f{i}"]) for i, name in enumerate(emails)}
