"""The dashboard's JSON snapshot of one run: everything the page draws, in one read.

The page renders from this and then applies websocket events to it in place; a reconnecting
socket fetches it again, so anything an event does not carry is never more than one resync away.
Read-only: it never changes a row.
"""
from typing import Any

from django.utils import timezone

from clients.models import Client, ClientEvent
from rounds.models import Round, RoundStatus, Run, Update
from rounds.serializers import RunSerializer

from .timeline import EventRow, UpdateRow, round_lanes

# Timelines for older rounds are rarely looked at and cost one event scan each; keep the snapshot
# small for long runs.
TIMELINE_ROUNDS = 20
RUN_LIST_LIMIT = 50


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def run_list() -> list[dict[str, Any]]:
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


def _round_entry(rnd: Round, received: list[int]) -> dict[str, Any]:
    return {
        "id": rnd.pk,
        "number": rnd.number,
        "status": rnd.status,
        "opened_at": _iso(rnd.opened_at),
        "deadline": _iso(rnd.deadline),
        "closed_at": _iso(rnd.closed_at),
        "expected": sorted(c.pk for c in rnd.expected.all()),
        "received": received,
        "config_version": rnd.config.version,
        "hyperparameters": rnd.hyperparameters,
        "upload_encoding": rnd.upload_encoding,
        "metrics": rnd.metrics,
    }


def _client_entry(client: Client, open_round: Round | None, open_expected: set[int]) -> dict[str, Any]:
    return {
        "id": client.pk,
        "name": client.name,
        "status": client.status,
        "round": open_round.number if open_round and client.pk in open_expected else None,
        "progress": client.progress,
        "num_examples": client.num_examples,
        "held_version": client.held_version,
        "last_seen": _iso(client.last_seen),
        "bytes_sent": client.bytes_sent,
        "bytes_received": client.bytes_received,
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
        run.round_set.select_related("config").prefetch_related("expected").order_by("number", "pk")
    )
    received: dict[int, list[int]] = {}
    for round_id, client_id in Update.objects.filter(round__run=run).values_list("round_id", "client_id"):
        received.setdefault(round_id, []).append(client_id)
    open_round = next((r for r in rounds if r.status == RoundStatus.OPEN), None)
    open_expected = {c.pk for c in open_round.expected.all()} if open_round else set()
    clients = list(run.clients.order_by("pk"))
    lanes = _lanes(run, rounds, {c.pk: c.name for c in clients})
    round_entries = []
    for rnd in rounds:
        entry = _round_entry(rnd, sorted(received.get(rnd.pk, [])))
        if rnd.pk in lanes:
            entry["lanes"] = lanes[rnd.pk]
        round_entries.append(entry)
    return {
        "server_time": timezone.now().isoformat(),
        "run": dict(RunSerializer(run).data),
        "config": _config_state(run, rounds),
        "rounds": round_entries,
        "clients": [_client_entry(c, open_round, open_expected) for c in clients],
        "runs": run_list(),
    }


def empty() -> dict[str, Any]:
    """What the page starts from when no run exists yet."""
    return {"server_time": timezone.now().isoformat(), "run": None, "config": None, "rounds": [], "clients": [], "runs": run_list()}
