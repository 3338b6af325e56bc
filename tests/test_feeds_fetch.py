"""Fetching through a real local HTTP server: conditional GET, size cap, timeouts, edits in place, the CLI."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone
from pathlib import Path

from publisher.config import FeedSettings
from publisher.ingest.feeds import fetch_all, read_sources
from publisher.progress import Progress

pytest_plugins = ["support.feed_server"]  # fixtures server, store

FEEDS = Path(__file__).resolve().parent.parent / "samples" / "feeds"
BROKEN = FEEDS / "broken"
NOW = datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc)
SETTINGS = FeedSettings(timeout=1.0, max_bytes=2_000_000, user_agent="publisher-tests/1 (+https://example.org)")


def quiet() -> Progress:
    return Progress(stream=io.StringIO(), interactive=False, quiet=True)


def fetch(sources, store, *, now=NOW, settings=SETTINGS, **kw):
    return fetch_all(list(sources), store, settings, now=now, progress=quiet(), **kw)


def item(n: int, title: str, summary: str = "Résumé.", day: int = 16) -> str:
    return (f"<item><title>{title}</title><link>https://www.endurance-info.com/a-{n}.html?utm_source=rss</link>"
            f"<guid isPermaLink=\"false\">https://www.endurance-info.com/?p={n}</guid>"
            f"<pubDate>Mon, {day} Nov 2026 09:00:00 +0000</pubDate><category>WEC</category>"
            f"<description>{summary}</description></item>")


def rss(*items: str) -> bytes:
    return ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
            '<link>https://www.endurance-info.com/</link>' + "".join(items) + "</channel></rss>").encode()


def test_conditional_get_second_fetch_is_304_and_counts_nothing(server, store):
    server.put("/feed", (FEEDS / "endurance-info-2026-w46-w47.xml").read_bytes(), etag='"v1"',
               last_modified=datetime(2026, 11, 21, 21, 0, tzinfo=timezone.utc))
    (first,) = fetch([server.url("/feed")], store)
    assert (first.ok, first.new, first.updated, first.unchanged, first.rejected) == (True, 37, 0, 0, [])
    assert first.line() == f"{server.url('/feed')}: 37 new, 0 updated, 0 unchanged, 0 rejected"
    (second,) = fetch([server.url("/feed")], store, now=NOW + timedelta(hours=1))
    assert second.ok and second.not_modified
    assert (second.new, second.updated, second.unchanged) == (0, 0, 0)
    assert "not modified" in second.line()
    reqs = server.requests_for("/feed")
    assert len(reqs) == 2
    assert "if-none-match" not in reqs[0].headers
    assert reqs[1].headers["if-none-match"] == '"v1"'
    assert reqs[1].headers["if-modified-since"] == "Sat, 21 Nov 2026 21:00:00 GMT"
    assert reqs[0].headers["user-agent"] == SETTINGS.user_agent
    assert store.article_count() == 37
    state = store.feed_state(server.url("/feed"))
    assert state.etag == '"v1"' and state.ok == 1


def test_last_modified_alone_also_gives_304(server, store):
    server.put("/feed", rss(item(1, "Un")), etag=None, last_modified=datetime(2026, 11, 20, tzinfo=timezone.utc))
    fetch([server.url("/feed")], store)
    (second,) = fetch([server.url("/feed")], store)
    assert second.not_modified
    assert "if-none-match" not in server.requests_for("/feed")[1].headers


def test_refetch_of_an_edited_article_updates_it_in_place(server, store):
    server.put("/feed", rss(item(1, "WEC : premier titre"), item(2, "ELMS : inchangé")))
    (first,) = fetch([server.url("/feed")], store)
    assert (first.new, first.updated, first.unchanged) == (2, 0, 0)
    server.put("/feed", rss(item(1, "WEC : titre corrigé", "Résumé corrigé."), item(2, "ELMS : inchangé"),
                            item(3, "IMSA : nouveau")))
    (second,) = fetch([server.url("/feed")], store, now=NOW + timedelta(hours=1))
    assert (second.new, second.updated, second.unchanged, second.not_modified) == (1, 1, 1, False)
    assert second.line().endswith("1 new, 1 updated, 1 unchanged, 0 rejected")
    rows = store.conn.execute("SELECT id, title, summary, link FROM articles WHERE id = ?",
                              ("https://www.endurance-info.com/?p=1",)).fetchall()
    assert len(rows) == 1
    assert (rows[0]["title"], rows[0]["summary"]) == ("WEC : titre corrigé", "Résumé corrigé.")
    assert rows[0]["link"] == "https://www.endurance-info.com/a-1.html"
    assert store.article_count() == 3


def test_counts_rejected_entries_with_reasons(server, store):
    server.put("/rejects", (BROKEN / "rejects.xml").read_bytes())
    (r,) = fetch([server.url("/rejects")], store)
    assert r.ok and r.new == 1 and len(r.rejected) == 4
    assert r.line() == (f"{server.url('/rejects')}: 1 new, 0 updated, 0 unchanged, 4 rejected "
                        "(entry 1: link is not http(s) (javascript:); entry 2: no link and no guid; 2 more)")


def test_latin1_served_with_its_charset_keeps_accents(server, store):
    server.put("/latin1", (BROKEN / "latin1-no-declaration.xml").read_bytes(), content_type="text/xml; charset=iso-8859-1")
    (r,) = fetch([server.url("/latin1")], store)
    assert r.ok and r.new == 2 and r.warnings == []
    titles = {row["title"] for row in store.conn.execute("SELECT title FROM articles")}
    assert "Rallycross France : « Une saison très réussie » selon le président de l'AFOR" in titles


def test_malformed_feed_is_a_warning_not_an_error(server, store):
    server.put("/invalid", (BROKEN / "invalid-xml.xml").read_bytes())
    (r,) = fetch([server.url("/invalid")], store)
    assert r.ok and r.new == 3
    assert "warning: malformed feed" in r.line()


def test_one_bad_source_never_stops_the_others(server, store, tmp_path):
    server.put("/good", rss(item(1, "WEC : bon flux")))
    server.put("/html", (BROKEN / "not-a-feed.html").read_bytes(), content_type="text/html")
    server.put("/gone", b"", status=410)
    sources = [server.url("/html"), server.url("/gone"), str(tmp_path / "missing.xml"), "http://127.0.0.1:9/feed",
               server.url("/good"), str(BROKEN / "empty.xml"), "ftp://example.org/feed.xml"]
    results = fetch(sources, store)
    assert [r.ok for r in results] == [False, False, False, False, True, False, False]
    assert results[4].new == 1 and store.article_count() == 1
    for r, source in zip(results, sources):
        line = r.line()
        assert line.startswith(source + ": ") and "\n" not in line
    assert "no entries" in results[0].error
    assert "HTTP 410" in results[1].error and "feed may have moved" in results[1].error
    assert "file not found" in results[2].error
    assert "cannot connect" in results[3].error
    assert "no entries" in results[5].error
    assert "unsupported URL scheme 'ftp:'" in results[6].error
    assert all("rerun" in r.error or "check" in r.error for r in results if not r.ok)
    assert store.feed_state(server.url("/gone")).ok == 0


def test_huge_response_with_content_length_is_refused_before_reading(server, store):
    server.put("/huge", stream_bytes=50_000_000)
    (r,) = fetch([server.url("/huge")], store)
    assert not r.ok and "50,000,000 bytes, over [feeds].max_bytes" in r.error
    assert server.streamed < 50_000_000


def test_huge_streamed_response_is_cut_at_the_size_cap(server, store):
    server.put("/huge", stream_bytes=50_000_000, declare_length=False)
    (r,) = fetch([server.url("/huge")], store)
    assert not r.ok and "over [feeds].max_bytes (2,000,000 bytes); stopped reading" in r.error
    assert store.article_count() == 0


def test_a_server_that_never_answers_times_out(server, store):
    server.put("/hang", hang=True)
    server.put("/good", rss(item(1, "WEC : après le silence")))
    hang, good = fetch([server.url("/hang"), server.url("/good")], store,
                       settings=FeedSettings(timeout=0.3, max_bytes=1_000_000))
    assert not hang.ok and "no answer within 0.3s" in hang.error
    assert good.ok and good.new == 1


def test_local_file_unchanged_is_not_parsed_again(store, tmp_path):
    feed = tmp_path / "feed.xml"
    feed.write_bytes(rss(item(1, "Un")))
    (first,) = fetch([str(feed)], store)
    (second,) = fetch([str(feed)], store)
    assert first.new == 1 and second.not_modified
    feed.write_bytes(rss(item(1, "Un, modifié")))
    (third,) = fetch([str(feed)], store)
    assert (third.updated, third.not_modified) == (1, False)


def test_relative_paths_resolve_against_root(store, tmp_path):
    (tmp_path / "feeds").mkdir()
    (tmp_path / "feeds" / "f.xml").write_bytes(rss(item(1, "Un")))
    (r,) = fetch(["feeds/f.xml"], store, root=tmp_path)
    assert r.ok and r.source == "feeds/f.xml" and r.new == 1


def test_read_sources_touches_no_store_and_sends_no_validators(server):
    server.put("/feed", rss(item(1, "WEC : un"), item(2, "WEC : deux")), etag='"x"')
    server.put("/other", rss(item(2, "WEC : deux"), item(3, "WEC : trois")))
    articles, results = read_sources([server.url("/feed"), server.url("/other"), server.url("/missing")], SETTINGS,
                                     now=NOW, progress=quiet())
    assert [a.title for a in articles] == ["WEC : un", "WEC : deux", "WEC : trois"]
    assert [(r.ok, r.new, r.unchanged) for r in results] == [(True, 2, 0), (True, 1, 1), (False, 0, 0)]
    assert "HTTP 404" in results[2].error
    assert all("if-none-match" not in r.headers for r in server.requests)


# -- through the CLI, as a user runs it ------------------------------------------------------------


def test_cli_fetch_on_the_bundled_samples(project):
    proc = project.cli("--now", "2026-11-23T09:00:00+01:00", "fetch")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "samples/feeds/endurance-info-2026-w46-w47.xml: 37 new, 0 updated, 0 unchanged, 0 rejected",
        "samples/feeds/rallycross-france-2026-w46-w47.xml: 9 new, 0 updated, 0 unchanged, 0 rejected",
    ]
    again = project.cli("--now", "2026-11-23T10:00:00+01:00", "fetch")
    assert again.returncode == 0
    assert all("not modified" in line for line in again.stdout.splitlines())


def test_cli_fetch_resolves_configured_paths_against_the_settings_folder(project, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "publisher", "--settings", str(project.settings),
                           "--now", "2026-11-23T09:00:00+01:00", "fetch"], cwd=elsewhere, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "37 new" in proc.stdout


def test_cli_fetch_source_without_entries_exits_3_naming_it(project):
    bad = "samples/feeds/broken/not-a-feed.html"
    proc = project.cli("--now", "2026-11-23T09:00:00+01:00", "fetch", "--feed", bad,
                       "--feed", "samples/feeds/rallycross-france-2026-w46-w47.xml")
    assert proc.returncode == 3
    assert "rallycross-france-2026-w46-w47.xml: 9 new" in proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("publisher: error:")]
    assert errors == [f"publisher: error: {bad}: no entries: the feed is empty or is not an RSS/Atom feed; "
                      "check that this is an RSS/Atom feed, then rerun 'publisher fetch'"]
    assert "Traceback" not in proc.stderr
