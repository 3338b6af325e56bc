"""Times as the store keeps them: ISO 8601 text in UTC, sortable as text."""

from __future__ import annotations

from datetime import datetime, timezone


def iso(dt: datetime) -> str:
    """Aware datetime -> ISO 8601 in UTC (sortable as text)."""
    return dt.astimezone(timezone.utc).isoformat(timespec="seconds")


def from_iso(text: str) -> datetime:
    return datetime.fromisoformat(text)
