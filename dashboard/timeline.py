"""Per-round timelines: when each selected client downloaded, trained and uploaded.

The server sees only two instants of a client's round in its own clock: the selection (a
``ClientEvent`` stamped when the round opened) and the accepted upload (``Update.received_at``).
Between them the worker reports durations in ``X-Metrics`` (``download_seconds``,
``eval_seconds``, ``train_seconds``), measured on the device so clock skew does not matter. The
lane lays those out forward from the selection; whatever is left before the upload landed is the
``upload`` segment, which therefore also holds the device's wait for its next poll (at most the
poll interval). Durations are only laid out, never trusted to exceed the observed span.
"""
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Statuses that take a client out of the round it was selected for.
DROP_STATUSES = frozenset({"paused", "offline", "left", "kicked"})
# The worker's durations, in the order it spends them.
PHASES = (("download", "download_seconds"), ("eval", "eval_seconds"), ("train", "train_seconds"))


@dataclass(frozen=True)
class EventRow:
    client_id: int
    to_status: str
    at: datetime
    reason: str = ""
    round_id: int | None = None


@dataclass(frozen=True)
class UpdateRow:
    client_id: int
    received_at: datetime
    metrics: dict[str, Any]


@dataclass
class Lane:
    client: int
    name: str
    start: float
    end: float | None  # None while the client is still working in an open round
    outcome: str  # delivered | working | missed | paused | offline | left | kicked | abandoned
    segments: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "name": self.name,
            "start": self.start,
            "end": self.end,
            "outcome": self.outcome,
            "segments": self.segments,
            "events": self.events,
        }


def _offset(at: datetime, origin: datetime) -> float:
    return round(max(0.0, (at - origin).total_seconds()), 3)


def _segments(start: float, end: float, metrics: dict[str, Any]) -> list[dict[str, Any]]:
    span = max(0.0, end - start)
    known = [(kind, float(metrics[key])) for kind, key in PHASES if isinstance(metrics.get(key), (int, float))]
    total = sum(seconds for _, seconds in known)
    if not known:
        return [{"kind": "work", "start": start, "end": end}]
    # Device durations are measured on another clock; never let them overrun what the server saw.
    scale = min(1.0, span / total) if total > 0 else 1.0
    segments, cursor = [], start
    for kind, seconds in known:
        stop = round(cursor + max(0.0, seconds) * scale, 3)
        segments.append({"kind": kind, "start": cursor, "end": stop})
        cursor = stop
    if end > cursor:
        segments.append({"kind": "upload", "start": cursor, "end": end})
    return segments


def round_lanes(
    *,
    round_id: int,
    opened_at: datetime,
    closed_at: datetime | None,
    status: str,
    expected: set[int],
    names: dict[int, str],
    events: list[EventRow],
    updates: list[UpdateRow],
) -> list[dict[str, Any]]:
    """One lane per client selected for the round (including those dropped from it since).

    ``events`` are the run's client events in time order; ``updates`` the round's accepted ones.
    """
    window_end = closed_at
    selected: dict[int, datetime] = {}
    for event in events:
        if event.round_id == round_id and event.to_status == "training":
            selected.setdefault(event.client_id, event.at)
    by_client = {u.client_id: u for u in updates}
    members = sorted(set(selected) | expected | set(by_client))
    lanes = []
    for client_id in members:
        start = _offset(selected.get(client_id, opened_at), opened_at)
        update = by_client.get(client_id)
        own = [
            e for e in events
            if e.client_id == client_id and e.at >= opened_at and (window_end is None or e.at <= window_end)
            and not (e.round_id == round_id and e.to_status == "training")
        ]
        marks = [{"t": _offset(e.at, opened_at), "status": e.to_status, "reason": e.reason} for e in own]
        if update is not None:
            end = _offset(update.received_at, opened_at)
            lane = Lane(client_id, names.get(client_id, f"#{client_id}"), start, end, "delivered",
                        _segments(start, end, update.metrics))
        else:
            drop = next((e for e in own if e.to_status in DROP_STATUSES), None)
            if drop is not None:
                end, outcome = _offset(drop.at, opened_at), drop.to_status
            elif closed_at is not None:
                end, outcome = _offset(closed_at, opened_at), ("abandoned" if status == "abandoned" else "missed")
            else:
                end, outcome = None, "working"
            segments = [{"kind": "work", "start": start, "end": end}]
            lane = Lane(client_id, names.get(client_id, f"#{client_id}"), start, end, outcome, segments)
        lane.events = marks
        lanes.append(lane.as_dict())
    return lanes
