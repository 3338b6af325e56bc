"""Subscriber import/export/count/remove and the suppression list, against a real SQLite store."""

from __future__ import annotations

import io
import re
from datetime import datetime, timezone

import pytest

from publisher.cli import main
from publisher.progress import Progress
from publisher.store.db import Store
from publisher.store.subscribers import (
    MAX_KEPT_REJECTS,
    SubscriberRow,
    iter_subscribers,
    plan_recipients,
    suppress,
    upsert,
)
from publisher.subscribers import import_csv, normalise_address
from publisher.web.tokens import LinkToken, Signer

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("raw,want", [
    (" Jean.Dupont@Example.ORG ", "jean.dupont@example.org"),
    ("<a+tag@example.com>", "a+tag@example.com"),
    ("élise@exämple.fr", None),  # non-ASCII local part: refused
    ("x@exämple.fr", "x@xn--exmple-cua.fr"),
    ("jean@", None), ("@example.org", None), ("a@b@c.org", None), ("a..b@example.org", None),
    ("a b@example.org", None), ("a@localhost", None), ("a@-bad.org", None), ("", None), ("a@example.123", None),
])
def test_normalise_address(raw, want):
    if want is None:
        with pytest.raises(ValueError):
            normalise_address(raw)
    else:
        assert normalise_address(raw) == want


def _csv(tmp_path, text: str, encoding="utf-8", name="subs.csv"):
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


def test_import_reports_bad_rows_by_line_and_keeps_good_ones(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    path = _csv(tmp_path, "email,name,series,locale\n"
                          "claire@example.org,Claire Martin,wec;elms,fr_FR\n"
                          "pas-une-adresse,X,wec,fr_FR\n"
                          "\n"
                          "thomas@example.com,Thomas,inconnue,fr_FR\n"
                          "julie@example.org,Julie,gt,xx_YY\n"
                          "CLAIRE@example.org,,le-mans,\n")
    report = import_csv(store, path, NOW, known_lists={"wec", "elms", "gt", "le-mans"})
    assert report.rejected == [(3, "'pas-une-adresse' is not an address (needs exactly one @)"),
                               (5, "unknown series or list 'inconnue' (known: elms, gt, le-mans, wec)"),
                               (6, "unknown locale 'xx_YY' (e.g. fr_FR)")]
    assert (report.new, report.updated) == (1, 1)  # the second Claire row updates the first
    rows = list(iter_subscribers(store))
    assert [(r.email, r.name, r.lists, r.locale) for r in rows] == [
        ("claire@example.org", "Claire Martin", ("elms", "le-mans", "wec"), "fr_FR")]


def test_reimport_updates_never_duplicates_nor_loses(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    first = _csv(tmp_path, "email,name,series,locale\na@example.org,Anne,wec,fr_FR\nb@example.org,Bruno,gt,fr_FR\n")
    assert import_csv(store, first, NOW).new == 2
    # semicolon-separated, Windows-1252, a column order of its own, some blanks
    second = _csv(tmp_path, "locale;email;nom;séries\n;A@Example.org;;elms\nfr_BE;c@example.org;Cécile;wec\n",
                  encoding="cp1252", name="second.csv")
    report = import_csv(store, second, NOW)
    assert (report.new, report.updated, report.unchanged) == (1, 1, 0)
    again = import_csv(store, second, NOW)
    assert (again.new, again.updated, again.unchanged) == (0, 0, 2)
    got = {r.email: r for r in iter_subscribers(store)}
    assert sorted(got) == ["a@example.org", "b@example.org", "c@example.org"]
    assert got["a@example.org"].name == "Anne" and got["a@example.org"].lists == ("elms", "wec")
    assert got["a@example.org"].locale == "fr_FR"
    assert got["c@example.org"].name == "Cécile" and got["c@example.org"].locale == "fr_BE"


def test_suppressed_stay_suppressed_and_are_never_planned(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    path = _csv(tmp_path, "email,name,series\na@example.org,A,wec;elms\nb@example.org,B,endurance\nc@example.org,C,wec\n"
                          "d@example.org,D,gt\n")
    import_csv(store, path, NOW)
    suppress(store, "c@example.org", "unsubscribed", NOW)
    report = import_csv(store, path, NOW)  # a re-import must not resubscribe c
    assert report.suppressed == 1
    n = plan_recipients(store, "endurance/2026-W47", "email", ["endurance", "wec", "elms"], "2026-11-23T08:00:00+00:00")
    targets = [r[0] for r in store.conn.execute("SELECT target FROM deliveries ORDER BY target")]
    assert n == 2 and targets == ["a@example.org", "b@example.org"]  # a once despite two series


def test_cli_import_export_count_remove(project, capsys, tmp_path):
    s = ["--settings", str(project.settings)]
    bad = _csv(tmp_path, "email,name,series\nok@example.org,Ok,wec\nnope,X,wec\n", name="bad.csv")
    assert main([*s, "subscribers", "import", str(bad)]) == 2  # non-zero, yet the good row is in
    out = capsys.readouterr()
    assert "line 3: 'nope' is not an address" in out.err
    assert "1 new, 0 updated, 0 unchanged, 1 rejected" in out.out
    assert main([*s, "subscribers", "import", str(project.root / "samples" / "subscribers.csv")]) == 0
    capsys.readouterr()
    assert main([*s, "subscribers", "count", "--list", "wec"]) == 0
    assert "wec: 7" in capsys.readouterr().out
    assert main([*s, "subscribers", "remove", "OK@example.org", "inconnu@example.org"]) == 0
    out = capsys.readouterr().out
    assert "ok@example.org: removed and suppressed" in out and "inconnu@example.org: not a subscriber; suppressed" in out
    assert main([*s, "subscribers", "count"]) == 0
    assert "total: 20 subscribers; 2 suppressed (2 manual)" in capsys.readouterr().out
    export = tmp_path / "export.csv"
    assert main([*s, "subscribers", "export", "--list", "gt", "--out", str(export)]) == 0
    lines = export.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "email,name,series,locale" and len(lines) == 6
    assert "jerome.morel@example.net,Jérôme Morel,gt;imsa,fr_FR" in lines


def test_missing_email_column_is_one_line_input_error(project, capsys, tmp_path):
    path = _csv(tmp_path, "nom,series\nX,wec\n")
    assert main(["--settings", str(project.settings), "subscribers", "import", str(path)]) == 2
    assert "line 1: no 'email' column" in capsys.readouterr().err


def test_tokens_verify_only_their_own_address_and_list_and_hide_the_address():
    s = Signer(b"k" * 32)
    t = s.link("a@example.org", "endurance")
    assert s.verify_link(t) == LinkToken("a@example.org", "endurance")
    assert "a@example.org" not in t and "YUBleGFtcGxl" not in t  # neither the address nor its base64
    sealed, lst, mac = t.split(".")
    other = s.link("b@example.org", "endurance")
    assert s.verify_link(f"{other.split('.')[0]}.{lst}.{mac}") is None  # another address under this mac
    assert s.verify_link(f"{sealed}.{s.link('a@example.org', 'gt').split('.')[1]}.{mac}") is None  # another list
    assert s.verify_link(t[:-1]) is None and s.verify_link("") is None and s.verify_link("...") is None
    assert Signer(b"z" * 32).verify_link(t) is None
    assert s.verify_link(s.link("a@example.org")) == LinkToken("a@example.org", "")  # the preferences link
    confirm = s.confirm("abc")
    assert s.verify_confirm(confirm) == "abc" and s.verify_confirm(confirm[:-1] + "x") in (None,)
    assert s.verify_confirm(f"abd.{confirm.split('.')[1]}") is None


def test_bad_rows_beyond_the_first_hundred_are_counted_not_kept(project, capsys, tmp_path):
    lines = ["email,name,series"]
    for i in range(400):
        lines.append(f"ok{i}@example.org,Ok,wec" if i % 2 else f"nope{i},X,wec")
    path = _csv(tmp_path, "\n".join(lines) + "\n")
    report = import_csv(Store(tmp_path / "s.sqlite3"), path, NOW)
    assert report.rejected_count == 200 and len(report.rejected) == MAX_KEPT_REJECTS == 100
    assert report.rejected[0] == (2, "'nope0' is not an address (needs exactly one @)")
    assert report.rejected[-1][0] == 200  # the first hundred, in file order
    assert report.new == 200
    assert main(["--settings", str(project.settings), "subscribers", "import", str(path)]) == 2
    out = capsys.readouterr()
    shown = [line for line in out.err.splitlines() if ": line " in line]
    assert len(shown) == 100 and shown[-1].endswith("line 200: 'nope198' is not an address (needs exactly one @)")
    assert f"{path}: 100 more rejected row(s) not listed (only the first 100 are)" in out.err
    assert "200 row(s) rejected and not imported; fix them and rerun" in out.err
    assert f"{path}: 200 new, 0 updated, 0 unchanged, 200 rejected" in out.out


@pytest.mark.parametrize("encoding,name", [("utf-8", "Cécile Ñuñez"), ("utf-8-sig", "Cécile Ñuñez"),
                                           ("cp1252", "Cécile Œuvré"), ("utf-16", "Zoé 𝒵 Ōtsuka")])
def test_encoding_is_read_over_the_whole_file_not_its_first_chunk(tmp_path, encoding, name):
    """Files larger than the reader's 1 MB chunk: the accented row's first non-ASCII byte is the chunk's
    last byte (a UTF-8 character cut in two is still UTF-8), and 5,000 rows follow it."""
    chunk = 1 << 20
    head = "email,name,series\n"
    row = "r{:06d}@example.org,R,wec\n"
    before = head + "".join(row.format(i) for i in range((chunk - 200) // (len(row.format(0)) * (2 if encoding == "utf-16" else 1))))
    lead = len((before + "zz@example.org," + name[0]).encode(encoding))  # the bytes before the first accent
    pad = "y" * ((chunk - 1 - lead) // (2 if encoding == "utf-16" else 1))
    text = before + f"zz@example.org,{pad}{name},wec\n" + "".join(row.format(i) for i in range(900_000, 905_000))
    path = _csv(tmp_path, text, encoding=encoding)
    if encoding != "utf-16":
        assert path.read_bytes()[chunk - 1] >= 0x80  # the accent straddles (or, cp1252, ends) the first chunk
    store = Store(tmp_path / "s.sqlite3")
    report = import_csv(store, path, NOW)
    assert (report.new, report.rejected_count) == (text.count("\n") - 1, 0)
    assert store.conn.execute("SELECT name FROM subscribers WHERE email = 'zz@example.org'").fetchone()[0] == pad + name


def test_a_later_row_for_the_same_address_updates_the_earlier_whatever_the_batch(tmp_path):
    """Rows of one address in one batch or across batches: the same counts and the same result."""
    rows = [SubscriberRow("a@example.org", "", ("wec",)), SubscriberRow("b@example.org", "Bruno", ("gt",), "fr_FR"),
            SubscriberRow("a@example.org", "Anne", ("wec",)), SubscriberRow("a@example.org", "", ("elms", "wec")),
            SubscriberRow("b@example.org", "Bruno", ("gt",)), SubscriberRow("c@example.org", "", ("gt",))]
    outcomes = set()
    for batch in (1, 2, 4, 5000):
        store = Store(tmp_path / f"s{batch}.sqlite3")
        suppress(store, "c@example.org", "complaint", NOW)
        r = upsert(store, rows, NOW, batch=batch)
        subs = tuple((s.email, s.name, s.lists, s.locale) for s in iter_subscribers(store, include_suppressed=True))
        outcomes.add(((r.new, r.updated, r.unchanged, r.suppressed), subs))
    assert outcomes == {((3, 2, 1, 1), (("a@example.org", "Anne", ("elms", "wec"), ""),
                                        ("b@example.org", "Bruno", ("gt",), "fr_FR"),
                                        ("c@example.org", "", ("gt",), "")))}


def test_import_shows_progress_as_a_bar_on_a_terminal(tmp_path):
    path = _csv(tmp_path, "email,series\n" + "".join(f"p{i}@example.org,wec\n" for i in range(30)) + "bad,wec")  # no last newline
    out = io.StringIO()
    import_csv(Store(tmp_path / "s.sqlite3"), path, NOW, progress=Progress(stream=out, interactive=True))
    assert out.getvalue().startswith(f"\rimport {path} [")
    assert "[" + "#" * 30 + "] 31/31" in out.getvalue() and out.getvalue().endswith("s)\n")


def test_import_logs_progress_lines_without_a_terminal(project):
    (project.root / "list.csv").write_text("email,series\n" + "".join(f"p{i}@example.org,wec\n" for i in range(12)),
                                           encoding="utf-8")
    proc = project.cli("subscribers", "import", "list.csv")
    assert proc.returncode == 0, proc.stderr
    assert "import list.csv: started (12 to do)" in proc.stderr
    assert re.search(r"import list\.csv: finished, 12/12 in \d+\.\ds", proc.stderr)
    assert "\r" not in proc.stderr
