"""The wire journal: what each sending thread did, appended with one write() per line.

Committing SQLite twice per message would cost more than sending it, so the ledger moves rows in
batches (claim 256 to `sending`, record outcomes 256 at a time) and this journal says, for a row
found in `sending` after a crash, what really happened to it:

    W <target>                      the message bytes were about to go on the wire
    R <target> <outcome> <id> <reply>   the server's answer (sent, failed, retry, unknown)

A `sending` row with an R line takes that outcome; with only a W line it is `unknown` (it may have
been delivered); with neither it never left, and goes back to `planned`. One write() to a file opened
with O_APPEND is in the kernel when it returns, so a kill -9 loses none of it; each thread holds at
most one message between its W and R lines, hence at most one `unknown` per connection. A pipelining
connection writes a message's R line together with the next message's W line, one write() for both,
just before that next message leaves.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from publisher.errors import DeliveryError, DiskFullError
from publisher.models import State
from publisher.store.ledger import Ledger

DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # what a full disk (or quota) looks like to write()


@dataclass(frozen=True)
class JournalLine:
    outcome: str  # "wire" (W only), "sent", "failed", "retry", "unknown"
    remote_id: str | None = None
    reply: str | None = None


def _clean(text: str) -> str:
    return text.replace("\t", " ").replace("\n", " ").replace("\r", " ")


class Journal:
    """An append-only file of W/R lines for one sender of one (edition, channel)."""

    def __init__(self, path: Path | None):
        self.path = path  # None: a run that needs no journal (the outbox); it reads as empty
        self._fd: int | None = None

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    @staticmethod
    def wire_line(target: str) -> bytes:
        return f"W\t{_clean(target)}\n".encode("utf-8")

    @staticmethod
    def result_line(target: str, outcome: str, remote_id: str | None, reply: str) -> bytes:
        return f"R\t{_clean(target)}\t{outcome}\t{_clean(remote_id or '')}\t{_clean(reply)}\n".encode("utf-8")

    def wire(self, target: str) -> None:
        self.write(self.wire_line(target))

    def result(self, target: str, outcome: str, remote_id: str | None, reply: str) -> None:
        self.write(self.result_line(target, outcome, remote_id, reply))

    def write(self, lines: bytes) -> None:
        """Lines in one write(): in the kernel when it returns, whole or not at all for the reader."""
        try:
            os.write(self._fd, lines)
        except OSError as exc:  # ENOSPC and friends: say which file
            raise OSError(exc.errno, exc.strerror, str(self.path)) from None

    def read(self, targets: Iterable[str]) -> dict[str, JournalLine]:
        """The last word on each of `targets` (rows found in `sending`); streamed, holds only those."""
        wanted = set(targets)
        found: dict[str, JournalLine] = {}
        if not wanted or self.path is None or not self.path.exists():
            return found
        with self.path.open("r", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.endswith("\n"):
                    break  # a torn last line: the write never completed
                parts = line.rstrip("\n").split("\t")
                if len(parts) < 2 or parts[1] not in wanted:
                    continue
                if parts[0] == "W":
                    found[parts[1]] = JournalLine("wire")
                elif parts[0] == "R" and len(parts) >= 5:
                    found[parts[1]] = JournalLine(parts[2], parts[3] or None, parts[4])
        return found

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def remove(self) -> None:
        """Delete the file (its sender is done and the ledger holds every outcome)."""
        self.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def recover(ledger: Ledger, edition_key: str, channel: str, journal_of: Callable[[str | None], Journal], *,
            own: bool = False) -> tuple[list[str], int]:
    """Settle rows left in `sending` by senders that are gone (`own`: this sender's own leftovers) from each
    one's wire journal; returns (targets now `unknown`, rows re-planned).

    An outcome line wins; a wire line alone means `unknown`; nothing at all means the message never
    left, so the row goes back to `planned`. A sender whose journal is not here (it ran on another
    machine sharing the store) leaves only `unknown` rows: what it sent cannot be known from here.
    """
    groups = ({ledger.holder: ledger.sending(edition_key, channel, ledger.holder)} if own
              else ledger.orphans(edition_key, channel))
    unknown: list[str] = []
    replanned = 0
    for holder, sending in groups.items():
        if not sending:
            continue
        journal = journal_of(holder)
        results: list[tuple[str, State, str | None, str | None]] = []
        replan: list[str] = []
        if journal.path is not None and not journal.path.exists():
            unknown += sending
            results = [(t, State.UNKNOWN, None, "sender stopped while this was on the wire (its wire journal is not on"
                                                " this machine); outcome unknown") for t in sending]
        else:
            entries = journal.read(sending)
            for t in sending:
                e = entries.get(t)
                if e is None or e.outcome in ("retry", "defer"):
                    replan.append(t)
                elif e.outcome == "wire":
                    unknown.append(t)
                    results.append((t, State.UNKNOWN, None, "process stopped while this was on the wire; outcome unknown"))
                else:
                    state = {"sent": State.SENT, "failed": State.FAILED}.get(e.outcome, State.UNKNOWN)
                    if state is State.UNKNOWN:
                        unknown.append(t)
                    results.append((t, state, e.remote_id, e.reply))
        ledger.settle(edition_key, channel, holder, results, replan)
        replanned += len(replan)
        if not own:
            journal.remove()  # a gone sender's journal: every row it held is settled now
    return sorted(unknown), replanned


def journal_error(exc: OSError) -> DeliveryError:
    if exc.errno in DISK_FULL:
        where = f" {exc.filename}" if exc.filename else ""
        return DiskFullError(f"disk full: cannot write the wire journal{where} ({exc.strerror or exc})",
                             hint="free space on that disk, then rerun the same command")
    return DeliveryError(f"email: cannot write the wire journal ({exc})")


class Reserve:
    """Room kept on the store's disk while a send runs, freed when the disk fills so outcomes can be recorded.

    When the disk fills up, the journal's next line or the ledger's next commit fails; the messages on
    the wire still get their answers, and recording them needs a little room: this file gives it back."""

    SIZE = 4 << 20

    def __init__(self, path: Path):
        self.path = path

    def take(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.SIZE)
            finally:
                os.close(fd)
        except OSError as exc:
            self.release()
            if exc.errno in DISK_FULL:
                raise DiskFullError(f"disk full: cannot keep {self.SIZE >> 20} MB free beside the store"
                                    f" ({self.path}: {exc.strerror}); nothing was sent") from None
            raise DeliveryError(f"email: cannot write beside the store ({self.path}: {exc.strerror or exc})",
                                hint="check the permissions of the store's folder, then rerun the same command") from None

    def release(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass
