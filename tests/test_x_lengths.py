"""X post lengths against the official twitter-text library's counts (tests/data/x_lengths.jsonl)."""

import json
from pathlib import Path

import pytest

from publisher.channels.x import x_length

CASES = [json.loads(line) for line in (Path(__file__).parent / "data" / "x_lengths.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("case", CASES, ids=[c["note"] for c in CASES])
def test_x_length_is_the_official_count(case):
    expected = case.get("ours", case["x"])  # `ours`: a documented difference from the official library
    assert x_length(case["text"]) == expected


def test_the_corpus_covers_what_our_old_count_got_wrong():
    notes = " ".join(c["note"] for c in CASES)
    for topic in ("CR LF", "copyright", ".paris", ".bzh", "parentheses", "ZWJ", "skin tone", "newer emoji", "t.co", "hashtag"):
        assert topic in notes, topic
    assert sum("ours" in c for c in CASES) == 1  # every other line is the official count itself
