"""Progress for long work (fetching, sending): a bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

log = logging.getLogger("publisher")


class Progress:
    """`with progress.task("email endurance/2026-W47", total=n) as t: t.advance()`."""

    def __init__(self, stream: TextIO | None = None, interactive: bool | None = None, quiet: bool = False):
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.quiet = quiet

    def task(self, label: str, total: int | None = None) -> "Task":
        return Task(self, label, total)


class Task:
    def __init__(self, progress: Progress, label: str, total: int | None):
        self.p, self.label, self.total = progress, label, total
        self.done = 0
        self._last_draw = 0.0
        self._last_log = 0.0
        self._started = time.monotonic()

    def __enter__(self) -> "Task":
        if not self.p.quiet and not self.p.interactive:
            log.info("%s: started%s", self.label, f" ({self.total} to do)" if self.total is not None else "")
        return self

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.p.quiet:
            return
        now = time.monotonic()
        if self.p.interactive:
            if now - self._last_draw >= 0.1 or (self.total and self.done >= self.total):
                self._last_draw = now
                self._draw()
        elif now - self._last_log >= 5.0:  # a line every few seconds, not per item
            self._last_log = now
            log.info("%s: %s", self.label, self._count())

    def _count(self) -> str:
        return f"{self.done}/{self.total}" if self.total else str(self.done)

    def _draw(self) -> None:
        width = 30
        if self.total:
            filled = int(width * min(self.done, self.total) / self.total)
            bar = "#" * filled + "-" * (width - filled)
            self.p.stream.write(f"\r{self.label} [{bar}] {self._count()}")
        else:
            self.p.stream.write(f"\r{self.label} {self._count()}")
        self.p.stream.flush()

    def __exit__(self, *exc) -> None:
        if self.p.quiet:
            return
        elapsed = time.monotonic() - self._started
        if self.p.interactive:
            self._draw()
            self.p.stream.write(f" ({elapsed:.1f}s)\n")
            self.p.stream.flush()
        else:
            log.info("%s: finished, %s in %.1fs", self.label, self._count(), elapsed)
