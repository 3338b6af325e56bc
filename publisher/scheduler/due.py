"""What is due now, decided purely from the campaigns, one `now` and what the store says (EditionState).

Shared by `publisher run`, `publisher schedule` and `publisher status`, so the three can never disagree.
Nothing here reads the clock or the store: scheduler/facts.py gathers the facts, runner.py acts on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Mapping, Sequence

from publisher.config import Campaign
from publisher.editions import latest_slot_edition, shift, slot


@dataclass(frozen=True)
class EditionState:
    """What the store says about one edition, as the due decision needs it."""

    status: str | None = None  # None (never started), "frozen" (rendered, sending) or "skipped"
    done_channels: frozenset[str] = frozenset()  # last run finished (ok or disabled) and no planned/sending rows
    waiting_channels: frozenset[str] = frozenset()  # rows left, but all held back by a retry time (4xx, 429)
    approved: bool = False  # an editor approved it (which froze it)
    held: bool = False  # an editor held it and did not release it yet


@dataclass(frozen=True)
class Due:
    """One thing to do now: fetch the feeds, send an edition (on some channels), or record a missed slot."""

    kind: str  # "fetch" | "send" | "skip" | "bounces" | "hold" (due, but waiting for an editor)
    reason: str
    campaign: str = ""
    edition_id: str = ""
    slot: datetime | None = None
    channels: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.campaign}/{self.edition_id}" if self.campaign else self.kind

    def line(self) -> str:
        """One log line naming the action and why."""
        if self.kind in ("fetch", "bounces"):
            return f"{self.kind}: {self.reason}"
        if self.kind == "send":
            return f"send {self.key} on {', '.join(self.channels)}: {self.reason}"
        if self.kind == "hold":
            return f"hold {self.key}: {self.reason}"
        return f"skip {self.key}: {self.reason}"


_UTC = timezone.utc
_MAX_LOOKBACK = 60  # weeks scanned back for slots missed while nothing ran


def candidate_editions(campaign: Campaign, now: datetime, lateness: timedelta,
                       last_tick: datetime | None = None) -> list[str]:
    """Editions to look at now, oldest first: the latest slot's edition, those still inside lateness,
    and those whose slot passed since the last wake-up (`last_tick`) so a missed one is recorded."""
    now = now.astimezone(_UTC)
    floor = now - lateness
    if last_tick is not None and last_tick.astimezone(_UTC) < floor:
        floor = last_tick.astimezone(_UTC)
    latest = latest_slot_edition(campaign, now)
    out = [latest]
    eid = shift(latest, -1)
    for _ in range(_MAX_LOOKBACK):
        if slot(campaign, eid).astimezone(_UTC) <= floor:
            break
        out.append(eid)
        eid = shift(eid, -1)
    return out[::-1]


def due(campaigns: Sequence[Campaign], now: datetime, editions: Mapping[tuple[str, str], EditionState], *,
        lateness: timedelta, fetch_every: timedelta, last_fetch: datetime | None,
        last_tick: datetime | None = None, lateness_text: str | None = None,
        alerts: Mapping[str, Sequence[tuple[str, datetime]]] | None = None) -> list[Due]:
    """What to do at `now`: a fetch first if one is due, then sends and missed-slot records.

    An edition is sent when slot <= now < slot + lateness and it has no record yet, or when it was
    started (frozen) and some channel is not done; an edition started but unfinished keeps going
    only until the campaign's next slot. A slot passed beyond lateness with no record becomes a
    `skip` ("missed: ..."). `editions` maps (campaign, edition id) to its stored state; missing
    means no record.

    An edition an editor held, or one of a campaign with approval = "required" not approved yet, is a
    `hold` instead of a send while it is the latest slot's: held at its slot, not skipped, it goes
    out at the first wake-up after its approval (or release), until the next slot.

    `alerts` maps a campaign's name to its alerts seen in the store, (edition id, publication time),
    from `alert_floor(...)` on: each goes out at once on the campaign's alert channels, once, while
    its article is younger than lateness; an older one with no record becomes a `skip`.
    """
    now = now.astimezone(_UTC)
    lateness_text = lateness_text or _duration_text(lateness)
    actions: list[Due] = []
    fresh_slots: list[datetime] = []  # slots of editions about to be rendered for the first time
    for campaign in campaigns:
        latest = latest_slot_edition(campaign, now)
        for eid in candidate_editions(campaign, now, lateness, last_tick):
            at = slot(campaign, eid)
            state = editions.get((campaign.name, eid), EditionState())
            if state.status == "skipped":
                continue
            waiting = _waiting_for_editor(campaign, state)
            if waiting and state.status == "frozen" and set(campaign.channels) <= state.done_channels:
                continue  # sent already (`publisher send` by hand): nothing left to hold
            if waiting and eid == latest:
                actions.append(Due("hold", f"{waiting} (slot {_local(at)})", campaign.name, eid, at))
                continue
            if waiting and state.status != "frozen":
                actions.append(Due("skip", f"missed: {waiting} before the next slot", campaign.name, eid, at))
                continue
            if state.status == "frozen":
                if eid != latest:
                    continue  # the next edition's slot has passed: an unfinished old one waits for the user
                left = tuple(c for c in campaign.channels
                             if c not in state.done_channels and c not in state.waiting_channels)
                if left:
                    first = state.approved and not state.done_channels and not state.waiting_channels
                    why = f"approved (slot {_local(at)})" if first else f"resuming (slot was {_local(at)})"
                    actions.append(Due("send", why, campaign.name, eid, at, left))
                continue
            if now < at.astimezone(_UTC) + lateness:
                late = now - at.astimezone(_UTC)
                why = f"slot {_local(at)}" + (f", {_duration_text(late)} late" if late >= timedelta(minutes=5) else "")
                actions.append(Due("send", why, campaign.name, eid, at, tuple(campaign.channels)))
                fresh_slots.append(at.astimezone(_UTC))
            else:
                actions.append(Due("skip", f"missed: slot was {_local(at)}, lateness is {lateness_text}",
                                   campaign.name, eid, at))
    for campaign in campaigns:
        for eid, published in (alerts or {}).get(campaign.name, ()):
            actions += _alert_actions(campaign, eid, published, now, editions, lateness, lateness_text)
    fetch = _fetch_reason(now, fetch_every, last_fetch, fresh_slots)
    if fetch:
        actions.insert(0, Due("fetch", fetch))
    return actions


def _waiting_for_editor(campaign: Campaign, state: EditionState) -> str | None:
    """Why an edition may not go out yet: held by an editor, or not approved where approval is required."""
    if state.held:
        return "held by an editor"
    if campaign.approval == "required" and not state.approved:
        return "waiting for an editor's approval"
    return None


def alert_floor(now: datetime, lateness: timedelta, last_tick: datetime | None) -> datetime:
    """The oldest publication time an alert is looked at from: lateness back, or the last wake-up if older
    (so an alert missed while nothing ran is recorded as missed)."""
    floor = now.astimezone(_UTC) - lateness
    return min(floor, last_tick.astimezone(_UTC)) if last_tick is not None else floor


def _alert_actions(campaign: Campaign, eid: str, published: datetime, now: datetime,
                   editions: Mapping[tuple[str, str], EditionState], lateness: timedelta, lateness_text: str) -> list[Due]:
    state = editions.get((campaign.name, eid), EditionState())
    channels = campaign.alert_channels
    # the slot stays in UTC: an aware time in the repeated hour of a DST change (fold=1) never compares
    # equal to another zone's; the reason shows local time
    at, when = published.astimezone(campaign.tz), published.astimezone(_UTC)
    if state.status == "skipped" or published.astimezone(_UTC) > now:
        return []
    fresh = now - published.astimezone(_UTC) < lateness
    if state.status == "frozen":
        left = tuple(c for c in channels if c not in state.done_channels and c not in state.waiting_channels)
        return [Due("send", f"resuming alert (published {_local(at)})", campaign.name, eid, when, left)] if left and fresh else []
    if fresh:
        return [Due("send", f"alert: published {_local(at)}", campaign.name, eid, when, channels)]
    return [Due("skip", f"missed: alert published {_local(at)}, lateness is {lateness_text}", campaign.name, eid, when)]


def _fetch_reason(now: datetime, every: timedelta, last: datetime | None, fresh_slots: list[datetime]) -> str | None:
    if last is None:
        return "no fetch recorded yet"
    last = last.astimezone(_UTC)
    # an edition is rendered from a fetch made after its slot, whatever the interval says
    if any(last < s for s in fresh_slots):
        return f"an edition is due and the last fetch ({last:%Y-%m-%d %H:%M} UTC) is older than its slot"
    if now >= last + every:
        return f"last fetch {last:%Y-%m-%d %H:%M} UTC, every {_duration_text(every)}"
    return None


def bounces_reason(now: datetime, every: timedelta, last: datetime | None) -> str | None:
    """Why the bounce mailbox is due to be read at `now`, or None if it was read less than `every` ago."""
    if last is None:
        return "the bounce mailbox was never read"
    if now - last >= every:
        return f"last read {last:%Y-%m-%d %H:%M} UTC, every {_duration_text(every)}"
    return None


def next_fetch(now: datetime, every: timedelta, last: datetime | None) -> datetime:
    """When the fetch interval next falls due (now if it never ran or is overdue)."""
    if last is None:
        return now
    return max(now, last + every)


def _local(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M %Z}"


def _duration_text(d: timedelta) -> str:
    s = int(d.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600)):
        if s >= size and s % size == 0:
            return f"{s // size}{unit}"
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m"
    return f"{s}s"
