"""What a user sees when a command refuses their input, and how the tests edit their files."""

from __future__ import annotations

import re


def error_line(proc) -> str:
    """The one `publisher: error:` line of a failed command (and never a traceback)."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("publisher: error: ")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def edit(path, pattern: str, replacement: str) -> None:
    """Replace the first match of `pattern` (multi-line mode) in a file; the pattern must match."""
    text = path.read_text(encoding="utf-8")
    new, n = re.subn(pattern, replacement, text, count=1, flags=re.M)
    assert n == 1, pattern
    path.write_text(new, encoding="utf-8")
