"""Progress on long work: a bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import io
import logging

from publisher.progress import Progress


def test_terminal_gets_a_bar_that_ends_complete():
    out = io.StringIO()
    with Progress(stream=out, interactive=True).task("email endurance/2026-W47", total=4) as t:
        for _ in range(4):
            t.advance()
    text = out.getvalue()
    assert text.startswith("\remail endurance/2026-W47 [")
    assert "[" + "#" * 30 + "] 4/4" in text  # the last frame is full
    assert text.endswith("s)\n") and "\n" not in text[:-1]  # one line, redrawn in place


def test_without_a_terminal_plain_log_lines(caplog):
    out = io.StringIO()
    with caplog.at_level(logging.INFO, logger="publisher"):
        with Progress(stream=out, interactive=False).task("fetch feed.xml", total=2) as t:
            t.advance(2)
    assert out.getvalue() == ""  # no control characters in a log file
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "fetch feed.xml: started (2 to do)"
    assert lines[-1].startswith("fetch feed.xml: finished, 2/2 in ")


def test_quiet_says_nothing(caplog):
    out = io.StringIO()
    with caplog.at_level(logging.INFO, logger="publisher"):
        with Progress(stream=out, interactive=True, quiet=True).task("x", total=1) as t:
            t.advance()
    assert out.getvalue() == "" and not caplog.records
