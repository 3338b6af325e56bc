"""Errors a user can act on. Each one prints as one line; tracebacks only with `-v`.

    PublisherError                 exit 1   base class; message says what, where, and what to run next
    ├── ConfigError                exit 2   settings.toml, campaigns/*.toml, a bad CLI value, missing secret
    ├── FeedError                  exit 3   a source that could not be fetched or yielded no entries
    ├── InputError                 exit 2   a user-supplied file (CSV, ...) that cannot be read at all
    ├── DeliveryError              exit 4   mail server or social API refused or failed; ledger says what is left
    │   └── DiskFullError          exit 4   the disk of the store or wire journal is full; a send stops cleanly
    ├── LockedError                exit 5   another process holds the edition or the scheduler lease
    ├── LintError                  exit 6   `preview --strict` found lint problems
    └── StoreError                 exit 7   the store's database went away mid-run (a PostgreSQL connection lost)

Library exceptions (httpx, smtplib, tweepy, Mastodon.py, atproto, sqlite3) are translated into these
at the one place each library is called; nothing above that seam sees them. A full disk (ENOSPC, a
full SQLite database) becomes DiskFullError wherever it is met.
"""

from __future__ import annotations


class PublisherError(Exception):
    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class ConfigError(PublisherError):
    exit_code = 2


class InputError(PublisherError):
    exit_code = 2


class FeedError(PublisherError):
    exit_code = 3


class DeliveryError(PublisherError):
    exit_code = 4


class LockedError(PublisherError):
    exit_code = 5


class LintError(PublisherError):
    exit_code = 6


class StoreError(PublisherError):
    """The store's server could not be reached mid-run; what this process held is settled by the next run."""

    exit_code = 7


class DiskFullError(DeliveryError):
    """The disk holding the store or the wire journal is full: nothing more is sent, what is known is recorded."""
