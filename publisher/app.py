"""The composition root: one command's Context (settings, one clock, the store, progress, a stop flag) and signals.

Everything a command needs is reached through a Context; nothing below it reads the clock itself. The
clock is the one source of time: `--now` fixes it (replays, demos, tests), otherwise it is the system's.
`ctx.now` is the moment the command (or one scheduler wake-up) acts at, taken from that clock once.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from publisher.channels import registry
from publisher.config import Settings, read_settings
from publisher.config.settings import secret
from publisher.progress import Progress
from publisher.store.db import Store
from publisher.store.ledger import Ledger

log = logging.getLogger("publisher")


def load_settings(path: str | Path = "settings.toml") -> Settings:
    """settings.toml with every channel's table read by the settings class its channel module declares."""
    return read_settings(path, {name: registry.get(name).settings_cls for name in registry.names()})


def system_clock() -> datetime:
    return datetime.now(timezone.utc)


class Context:
    """One command's world: settings, the clock and the moment it acts at, progress, a stop flag, the store."""

    def __init__(self, settings: Settings, now: datetime, *, fixed_now: bool = False,
                 clock: Callable[[], datetime] | None = None, verbose: int = 0, progress: Progress | None = None,
                 stop: threading.Event | None = None, store: Store | None = None):
        self.settings = settings
        self.now = now
        # --now given: the clock stands still at it, so a replay's leases and runs read that time too
        self.clock: Callable[[], datetime] = clock or ((lambda: now) if fixed_now else system_clock)
        self.verbose = verbose
        self.progress = progress or Progress()
        self.stop = stop or threading.Event()
        self._store = store

    @classmethod
    def open(cls, settings_path: str | Path, now: datetime, fixed_now: bool = False, verbose: int = 0) -> "Context":
        return cls(load_settings(settings_path), now, fixed_now=fixed_now, verbose=verbose)

    def at(self, now: datetime) -> "Context":
        """The same world acting at `now` (one scheduler wake-up); shares the store, the clock and the stop flag."""
        return Context(self.settings, now, clock=self.clock, verbose=self.verbose, progress=self.progress,
                       stop=self.stop, store=self.store)

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.settings.store_target, password=secret("PUBLISHER_STORE_PASSWORD"))
        return self._store

    def ledger(self) -> Ledger:
        return Ledger(self.store, clock=self.clock)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM/SIGINT set `stop` (finish what is in flight); a second signal acts as the default would."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        log.info("%s received: finishing the message or post in flight, leaving the rest pending", name)
        stop.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# -- the commands --------------------------------------------------------------------------------
