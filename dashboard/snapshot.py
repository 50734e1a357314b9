"""The dashboard's JSON snapshot of one run: everything the page draws, in one read.

The page renders from this and then applies websocket events to it in place; a reconnecting
socket fetches it again, so anything an event does not carry is never more than one resync away.
Read-only: it never changes a row.
"""
from collections.abc import Mapping
from typing import Any

from django.utils import timezone

from clients.models import Client, ClientEvent
from clients.services import client_snapshot
from rounds.models import Round, RoundStatus, Run, Update
from rounds.shapes import round_shape, run_shape

from .timeline import EventRow, UpdateRow, round_lanes

# Timelines for older rounds are rarely looked at and cost one event scan each; keep the snapshot
# small for long runs.
TIMELINE_ROUNDS = 20
RUN_LIST_LIMIT = 50


def run_list() -> list[Mapping[str, Any]]:
    return list(Run.objects.order_by("-pk").values("id", "name", "status")[:RUN_LIST_LIMIT])


def _config_state(run: Run, rounds: list[Round]) -> dict[str, Any]:
    """The newest configuration version, the one the current round runs with, and the pending diff."""
    configs = {c.version: c for c in run.configs.all()}
    latest = max(configs, default=None)
    live = [r for r in rounds if r.status != RoundStatus.ABANDONED]
    in_force = live[-1].config.version if live else latest
    pending: dict[str, list[Any]] = {}
    if latest is not None and in_force is not None and in_force != latest:
        old, new = configs[in_force].values, configs[latest].values
        pending = {f: [old.get(f), new[f]] for f in new if old.get(f) != new[f]}
    return {
        "version": latest,
        "in_force": in_force,
        "values": configs[latest].values if latest is not None else {},
        "in_force_values": configs[in_force].values if in_force is not None else {},
        "pending": pending,
    }


def _client_entry(client: Client, open_round: Round | None, open_expected: set[int]) -> dict[str, Any]:
    # The client's one shape (as the API and events have it), plus the round it works for.
    return {
        **client_snapshot(client),
        "round": open_round.number if open_round and client.pk in open_expected else None,
    }


def _lanes(run: Run, rounds: list[Round], names: dict[int, str]) -> dict[int, list[dict[str, Any]]]:
    recent = rounds[-TIMELINE_ROUNDS:]
    if not recent:
        return {}
    since = min(r.opened_at for r in recent)
    events = [
        EventRow(e["client_id"], e["to_status"], e["at"], e["reason"], e["round_id"])
        for e in ClientEvent.objects.filter(client__run=run, at__gte=since)
        .order_by("at", "pk")
        .values("client_id", "to_status", "at", "reason", "round_id")
    ]
    updates: dict[int, list[UpdateRow]] = {}
    for u in Update.objects.filter(round__in=recent).values("round_id", "client_id", "received_at", "metrics"):
        updates.setdefault(u["round_id"], []).append(UpdateRow(u["client_id"], u["received_at"], u["metrics"]))
    return {
        r.pk: round_lanes(
            round_id=r.pk, opened_at=r.opened_at, closed_at=r.closed_at, status=r.status,
            expected={c.pk for c in r.expected.all()}, names=names, events=events,
            updates=updates.get(r.pk, []),
        )
        for r in recent
    }


def build(run: Run) -> dict[str, Any]:
    rounds = list(
        run.round_set.select_related("config", "run", "base_version", "result_version")
        .prefetch_related("expected", "updates__client")
        .order_by("number", "pk")
    )
    open_round = next((r for r in rounds if r.status == RoundStatus.OPEN), None)
    open_expected = {c.pk for c in open_round.expected.all()} if open_round else set()
    clients = list(run.clients.order_by("pk"))
    lanes = _lanes(run, rounds, {c.pk: c.name for c in clients})
    round_entries = []
    for rnd in rounds:
        entry = round_shape(rnd)
        if rnd.pk in lanes:
            entry["lanes"] = lanes[rnd.pk]
        round_entries.append(entry)
    return {
        "server_time": timezone.now().isoformat(),
        "run": run_shape(run),
        "config": _config_state(run, rounds),
        "rounds": round_entries,
        "clients": [_client_entry(c, open_round, open_expected) for c in clients],
        "runs": run_list(),
    }


def empty() -> dict[str, Any]:
    """What the page starts from when no run exists yet."""
    return {"server_time": timezone.now().isoformat(), "run": None, "config": None, "rounds": [], "clients": [],
            "runs": run_list()}
