"""Whole-output golden tests: the embedded default's sample week (2026-W47), as a user produces it.

Two throw-away copies of the project run the quickstart sequence through the real CLI
(`subscribers import`, `fetch`, `preview`, `run` in outbox mode) with a fixed `--now`. What they write
is compared with `tests/golden/2026-W47/`: per campaign the preview's email.html, email.txt and
posts.json, one outbox .eml per campaign as a decoded MIME transcript, every outbox post JSON, the
preview index page, the list of files written, and the commands' standard output. The two copies
must also agree byte for byte (the second runs under another TZ and hash seed), so a golden file can
never pin something that changes between runs.

Regenerate after an intended change, then review the diff before committing:

    PUBLISHER_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_golden.py

See tests/golden/README.md.
"""

from __future__ import annotations

import difflib
import email
import email.policy
import html
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from email.header import decode_header, make_header
from pathlib import Path

import pytest

from publisher.web.tokens import LinkToken, Signer

REPO = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
EDITION = "2026-W47"
NOW = "2026-11-23T10:00:00+01:00"  # Monday of week 48, 10:00 Paris: every campaign's W47 slot has passed
UPDATE = os.environ.get("PUBLISHER_UPDATE_GOLDEN") == "1"
REGENERATE = "PUBLISHER_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_golden.py"
# a fixed key, so the signed unsubscribe tokens are part of the golden output instead of noise
SECRET = "golden-test-unsubscribe-secret"
CAMPAIGNS = ("endurance", "gt", "imsa", "rallycross")
NETWORKS = ("x", "mastodon", "bluesky")
# one known subscriber per campaign, each with a non-ASCII name (the To header is RFC 2047-encoded)
RECIPIENTS = {
    "endurance": ("francois.simon@example.com", "François Simon"),
    "gt": ("jerome.morel@example.net", "Jérôme Morel"),
    "imsa": ("sebastien.leroy@example.com", "Sébastien Leroy"),
    "rallycross": ("lea.laurent@example.org", "Léa Laurent"),
}
TOP_HEADERS = ("From", "Reply-To", "To", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe",
               "List-Unsubscribe-Post", "X-Publisher-Edition", "MIME-Version", "Content-Type")
BOUNDARY_RE = re.compile(rb'boundary="(=_publisher_[0-9a-f]{24})"')
DIFF_LINES = 60


# -- the two runs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One project copy after the quickstart sequence."""

    root: Path
    stdout: str  # every command's standard output, the copy's path replaced by <PROJECT>

    @property
    def outbox(self) -> Path:
        return self.root / "var" / "outbox"

    @property
    def preview(self) -> Path:
        return self.root / "var" / "preview"

    def files(self) -> dict[str, bytes]:
        """Every file the commands wrote under var/, except the SQLite store (its rows carry wall-clock times)."""
        var = self.root / "var"
        return {p.relative_to(var).as_posix(): p.read_bytes() for p in sorted(var.rglob("*"))
                if p.is_file() and not p.name.startswith("publisher.sqlite3")}


def _run_copy(root: Path, extra_env: dict[str, str]) -> Run:
    root.mkdir(parents=True)
    shutil.copy(REPO / "settings.toml", root / "settings.toml")
    for folder in ("campaigns", "samples", "templates"):
        if (REPO / folder).exists():
            shutil.copytree(REPO / folder, root / folder)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")}
    env.update({"PUBLISHER_UNSUBSCRIBE_SECRET": SECRET, **extra_env})
    out = []
    for args in (("subscribers", "import", "samples/subscribers.csv"), ("fetch",), ("preview",), ("run",)):
        cmd = [sys.executable, "-m", "publisher", "--settings", str(root / "settings.toml"), "--now", NOW, *args]
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"publisher {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr, proc.stderr
        out.append(f"$ publisher --now {NOW} {' '.join(args)}\n{proc.stdout}")
    return Run(root, "".join(out).replace(str(root), "<PROJECT>"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Run, Run]:
    """The sample week built twice, in two copies; the second under another time zone and hash seed."""
    base = tmp_path_factory.mktemp("golden")
    first = _run_copy(base / "a" / "project", {})
    second = _run_copy(base / "b" / "project", {"TZ": "Pacific/Auckland", "PYTHONHASHSEED": "4242"})
    return first, second


# -- golden comparison -----------------------------------------------------------------------------------


def _check(expected: dict[str, str]) -> None:
    """Compare each golden name with its produced text; rewrite them instead under PUBLISHER_UPDATE_GOLDEN=1."""
    problems = []
    for name, actual in expected.items():
        path = GOLDEN / EDITION / name
        if UPDATE:
            if not path.exists() or path.read_bytes() != actual.encode("utf-8"):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(actual.encode("utf-8"))
            continue
        if not path.exists():
            problems.append(f"{name}: no golden file {path.relative_to(REPO)}")
            continue
        golden = path.read_bytes().decode("utf-8")
        if golden != actual:
            diff = list(difflib.unified_diff(golden.splitlines(), actual.splitlines(), f"golden/{EDITION}/{name}",
                                             f"produced/{name}", lineterm="", n=2))
            if not diff:  # only line endings or the final newline differ
                diff = [f"(same lines, different bytes: golden {golden.encode()[-40:]!r} vs produced {actual.encode()[-40:]!r})"]
            more = f"\n... {len(diff) - DIFF_LINES} more diff lines" if len(diff) > DIFF_LINES else ""
            problems.append("\n".join(diff[:DIFF_LINES]) + more)
    if problems:
        pytest.fail(f"{len(problems)} golden file(s) differ from what was produced:\n\n" + "\n\n".join(problems)
                    + f"\n\nIf the change is intended, regenerate with\n    {REGENERATE}\nand review the diff.",
                    pytrace=False)


def _text(data: bytes) -> str:
    return data.decode("utf-8")


def _goldens(run: Run) -> dict[str, str]:
    """Every golden file's expected content, by its name under tests/golden/2026-W47/."""
    files = run.files()
    out = {"index.html": _text(files["preview/index.html"]),
           "cli-output.txt": run.stdout,
           "manifest.txt": "".join(f"{name}\n" for name in files)}
    for c in CAMPAIGNS:
        for f in ("email.html", "email.txt", "posts.json"):
            out[f"{c}/{f}"] = _text(files[f"preview/{c}/{EDITION}/{f}"])
        address, _ = RECIPIENTS[c]
        out[f"{c}/outbox-{address}.eml.txt"] = transcript(files[f"outbox/{c}/{EDITION}/email/{address}.eml"])
        for n in NETWORKS:
            for name, data in files.items():
                if name.startswith(f"outbox/{c}/{EDITION}/{n}/"):
                    out[f"{c}/outbox-{n}/{name.rpartition('/')[2]}"] = _text(data)
    return out


# -- the MIME transcript ------------------------------------------------------------------------------------


def transcript(raw: bytes) -> str:
    """A readable form of a raw message: headers as sent, bodies decoded from quoted-printable.

    Only the multipart boundary is normalised (it is a hash of the rendered content, so it changes with
    every template edit and would only add noise); Date follows --now and Message-ID is derived from the
    edition and the address, so both are pinned as they are.
    """
    boundary = BOUNDARY_RE.search(raw).group(1).decode("ascii")
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii").replace("\r\n", "\n").replace(boundary, "<BOUNDARY>")
    longest = max(map(len, raw.split(b"\r\n")))
    bare = raw.replace(b"\r\n", b"")
    ends = "CRLF" if raw.endswith(b"\r\n") and b"\r" not in bare and b"\n" not in bare else "MIXED"
    lines = [f"# {len(raw)} bytes, {ends} line ends, longest line {longest} bytes;"
             " boundary shown as <BOUNDARY>, bodies decoded from quoted-printable", head]
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    for name in ("To", "Subject", "List-Id"):
        decoded = str(make_header(decode_header(msg[name])))
        if decoded != msg[name]:
            lines.append(f"# {name} decoded: {decoded}")
    for part in msg.get_payload():
        body = part.get_payload(decode=True).decode(part.get_content_charset()).replace("\r\n", "\n")
        lines += ["", "--<BOUNDARY>", *(f"{k}: {v}" for k, v in part.items()), "", body.rstrip("\n")]
    lines += ["--<BOUNDARY>--", ""]
    return "\n".join(lines)


def _assert_raw_structure(raw: bytes, address: str, name: str, campaign: str) -> email.message.Message:
    """The facts a transcript hides: exact bytes on the wire."""
    assert raw.isascii(), "the message must be 7-bit (quoted-printable bodies, RFC 2047 headers)"
    assert raw.endswith(b"\r\n")
    bare = raw.replace(b"\r\n", b"")
    assert b"\r" not in bare and b"\n" not in bare, "every line must end in CRLF, with no bare CR or LF"
    lines = raw.split(b"\r\n")
    assert max(map(len, lines)) <= 998, "RFC 5322 line limit"
    assert not [ln for ln in lines if ln.startswith(b".")], "a line starting with '.' would need dot-stuffing"
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    names = [ln.split(":", 1)[0] for ln in head.split("\r\n") if not ln.startswith((" ", "\t"))]
    assert sorted(names) == sorted(TOP_HEADERS), names  # each header exactly once, nothing else
    assert "\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in head  # RFC 8058: one line, exact value
    assert f"\r\nX-Publisher-Edition: {campaign}/{EDITION}\r\n" in head
    assert re.search(r"\r\nMessage-ID: <[A-Za-z0-9.-]+@endurance-info\.com>\r\n", head)
    assert re.search(r"\r\nDate: Mon, 23 Nov 2026 10:00:00 \+0100\r\n", head)  # the --now, not the wall clock
    assert len(BOUNDARY_RE.findall(raw)) == 1

    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert not msg.defects and all(not p.defects for p in msg.walk())
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert msg["To"].addresses[0].addr_spec == address and msg["To"].addresses[0].display_name == name
    # the link is signed for this subscriber with the test's key, and is the same in both bodies
    url = re.fullmatch(r"<(https://[^>]+)>,\s*<mailto:[^>]+>", str(msg["List-Unsubscribe"])).group(1)
    token = re.fullmatch(r"https://www\.endurance-info\.com/newsletter/unsubscribe\?t=([A-Za-z0-9_.-]+)", url).group(1)
    # opaque (the address sealed, not readable), and it leaves this campaign's list only
    assert Signer(SECRET.encode()).verify_link(token) == LinkToken(address, campaign)
    assert address.split("@")[0] not in token
    assert url in msg.get_body(("plain",)).get_content()
    assert html.escape(url, quote=True) in msg.get_body(("html",)).get_content()
    return msg


# -- the tests ---------------------------------------------------------------------------------------------------


def test_two_runs_write_the_same_bytes(runs):
    a, b = runs
    fa, fb = a.files(), b.files()
    assert list(fa) == list(fb), "the two runs wrote different files"
    differ = [name for name in fa if fa[name] != fb[name]]
    assert not differ, f"output changed between two identical runs (TZ/hash seed differ): {differ[:10]}"
    assert a.stdout == b.stdout
    leaks = [name for name, data in fa.items() if str(a.root).encode() in data]
    assert not leaks, f"the project's absolute path leaks into {leaks[:10]}"
    assert len([n for n in fa if n.endswith(".eml") and n.startswith("outbox/")]) == 28  # 14 + 5 + 4 + 5 recipients


@pytest.mark.parametrize("campaign", CAMPAIGNS)
def test_preview_edition_matches_golden(runs, campaign):
    expected = _goldens(runs[0])
    _check({k: v for k, v in expected.items() if k in {f"{campaign}/{f}" for f in ("email.html", "email.txt", "posts.json")}})
    posts = json.loads(expected[f"{campaign}/posts.json"])
    assert set(posts) == set(NETWORKS)
    for items in posts.values():
        assert [p["position"] for p in items] == list(range(len(items)))
        assert all(0 < p["length"] <= p["limit"] for p in items)


@pytest.mark.parametrize("campaign", CAMPAIGNS)
def test_outbox_email_matches_golden(runs, campaign):
    address, name = RECIPIENTS[campaign]
    raw = (runs[0].outbox / campaign / EDITION / "email" / f"{address}.eml").read_bytes()
    msg = _assert_raw_structure(raw, address, name, campaign)
    _check({f"{campaign}/outbox-{address}.eml.txt": transcript(raw)})

    # Preview shows exactly what send sends: same rendering (so the same content-hash boundary), and bodies
    # equal to the preview's email.html / email.txt once this recipient's personal values are filled in.
    folder = runs[0].preview / campaign / EDITION
    assert BOUNDARY_RE.search(raw).group(1) == BOUNDARY_RE.search((folder / "email.eml").read_bytes()).group(1)
    url = re.match(r"<([^>]+)>", str(msg["List-Unsubscribe"])).group(1)
    # the preferences page: its own token, naming this reader and no list (one-click leaves this campaign only)
    preferences = re.search(r"https://\S+/unsubscribe/preferences\?t=([\w.-]+)", msg.get_body(("plain",)).get_content())
    assert Signer(SECRET.encode()).verify_link(preferences.group(1)) == LinkToken(email=address, list="")
    preferences = preferences.group(0)
    values = {"%%UNSUBSCRIBE_URL%%": url, "%%PREFERENCES_URL%%": preferences, "%%EMAIL%%": address, "%%NAME%%": name}

    def filled(text: str, escape) -> str:
        for token, value in values.items():
            text = text.replace(token, escape(value))
        return text.replace("\r\n", "\n").rstrip("\n")

    plain = msg.get_body(("plain",)).get_content().replace("\r\n", "\n").rstrip("\n")
    assert plain == filled((folder / "email.txt").read_text(encoding="utf-8"), str)
    body = msg.get_body(("html",)).get_content().replace("\r\n", "\n").rstrip("\n")
    assert body == filled((folder / "email.html").read_text(encoding="utf-8"), lambda v: html.escape(v, quote=True))


@pytest.mark.parametrize("campaign", CAMPAIGNS)
def test_outbox_posts_match_golden(runs, campaign):
    expected = _goldens(runs[0])
    _check({k: v for k, v in expected.items() if k.startswith(f"{campaign}/outbox-") and k.endswith(".json")})
    preview = json.loads(expected[f"{campaign}/posts.json"])
    for network in NETWORKS:
        folder = runs[0].outbox / campaign / EDITION / network
        written = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("post-*.json"))]
        assert len(written) == len(preview[network]) > 0, network
        for post, shown in zip(written, preview[network]):
            assert post["network"] == network and post["edition"] == f"{campaign}/{EDITION}"
            # the outbox posts are the previewed posts
            for key in ("position", "text", "length", "limit", "links", "image", "card", "language"):
                assert post[key] == shown[key], (network, post["position"], key)


def test_preview_index_and_cli_output_match_golden(runs):
    expected = _goldens(runs[0])
    _check({k: expected[k] for k in ("index.html", "cli-output.txt", "manifest.txt")})
    for c in CAMPAIGNS:
        assert f'data-campaign="{c}" data-edition="{EDITION}"' in expected["index.html"]


def test_no_stale_golden_files(runs):
    expected = set(_goldens(runs[0])) | {"../README.md", "../.gitattributes"}
    present = {p.relative_to(GOLDEN / EDITION).as_posix() if p.is_relative_to(GOLDEN / EDITION) else "../" + p.name
               for p in GOLDEN.rglob("*") if p.is_file()}
    stale = sorted(present - expected)
    if UPDATE:
        for name in stale:
            (GOLDEN / EDITION / name).unlink()
        return
    if stale:
        pytest.fail(f"golden files nothing produces any more: {stale}; remove them or run\n    {REGENERATE}",
                    pytrace=False)
