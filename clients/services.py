"""Every client status change goes through ``client_transition``: one guarded write, one history
row, one dashboard event."""
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from dashboard.events import publish
from fedplatform.errors import Conflict

from rounds.models import Round, RoundStatus

from .models import GONE_STATUSES, Client, ClientEvent, ClientStatus, hash_token, new_token

# Which moves are legal; anything else is refused, so a late request cannot resurrect a client.
ALLOWED = {
    ClientStatus.JOIN: {ClientStatus.READY, ClientStatus.TRAINING, ClientStatus.UPDATE},
    ClientStatus.READY: {ClientStatus.TRAINING, ClientStatus.UPDATE},
    ClientStatus.TRAINING: {ClientStatus.FINISH, ClientStatus.READY},
    ClientStatus.FINISH: {ClientStatus.READY, ClientStatus.UPDATE, ClientStatus.TRAINING},
    ClientStatus.UPDATE: {ClientStatus.READY, ClientStatus.TRAINING},
    ClientStatus.PAUSED: {ClientStatus.READY},
    ClientStatus.OFFLINE: {ClientStatus.READY, ClientStatus.JOIN},
    ClientStatus.LEFT: set(),
    ClientStatus.KICKED: set(),
}
# Operators and the sweep may move any live client to these; each also drops the client from the
# round it was expected in, so that round can close without it.
ALWAYS_ALLOWED = {ClientStatus.PAUSED, ClientStatus.OFFLINE, ClientStatus.LEFT, ClientStatus.KICKED}


def client_snapshot(client: Client) -> dict:
    return {
        "id": client.pk,
        "run": client.run_id,
        "name": client.name,
        "status": client.status,
        "progress": client.progress,
        "num_examples": client.num_examples,
        "last_seen": client.last_seen.isoformat() if client.last_seen else None,
        "bytes_sent": client.bytes_sent,
        "bytes_received": client.bytes_received,
        "held_version": client.held_version,
    }


def client_transition(
    *, client: Client, to: str, reason: str = "", actor: str = "", round=None
) -> bool:
    """Move ``client`` to ``to`` if that move is legal from its current (database) status.

    The conditional UPDATE makes the check and the write one step, safe across processes.
    Returns whether the client moved; ``client`` is refreshed either way.
    """
    with transaction.atomic():
        current = Client.objects.filter(pk=client.pk).values_list("status", flat=True).first()
        if current is None or current == to:
            client.refresh_from_db()
            return False
        if current in GONE_STATUSES or (to not in ALWAYS_ALLOWED and to not in ALLOWED[current]):
            client.refresh_from_db()
            return False
        changes = {"status": to}
        if to != ClientStatus.TRAINING:
            changes["progress"] = 0.0
        moved = Client.objects.filter(pk=client.pk, status=current).update(**changes)
        if not moved:
            client.refresh_from_db()
            return False
        ClientEvent.objects.create(
            client=client, from_status=current, to_status=to, reason=reason, actor=actor, round=round
        )
        if to in ALWAYS_ALLOWED:
            _drop_from_open_rounds(client)
        client.refresh_from_db()
        publish("client.status", client_snapshot(client))
    return True


def _drop_from_open_rounds(client: Client) -> None:
    """Forget that an open round waits for this client; an update it already sent stays."""
    Expected = Round.expected.through
    Expected.objects.filter(client_id=client.pk, round__status=RoundStatus.OPEN).exclude(
        round__updates__client_id=client.pk
    ).delete()


def client_register(
    *, run, name: str, num_examples: int, device_info: dict, accepts: list[str]
) -> tuple[Client, str]:
    """Create a client and return it with its secret token (shown this once)."""
    if run.is_terminal:
        raise Conflict(f"run {run.pk} is {run.status} and takes no clients", "run_closed")
    token = new_token()
    client = Client.objects.create(
        run=run,
        name=name,
        num_examples=num_examples,
        device_info=device_info,
        accepts=accepts,
        token_hash=hash_token(token),
        last_seen=timezone.now(),
    )
    ClientEvent.objects.create(client=client, from_status=ClientStatus.JOIN, to_status=ClientStatus.JOIN, reason="registered")
    publish("client.status", client_snapshot(client))
    return client, token


def client_seen(*, client: Client, progress: float | None = None) -> None:
    """Record that the device is alive; an offline client comes back as ready."""
    changes = {"last_seen": timezone.now()}
    if progress is not None:
        changes["progress"] = max(0.0, min(1.0, float(progress)))
    Client.objects.filter(pk=client.pk).update(**changes)
    for field, value in changes.items():
        setattr(client, field, value)
    if client.status == ClientStatus.OFFLINE:
        client_transition(client=client, to=ClientStatus.READY, reason="back online")


def client_count_bytes(*, client: Client, sent: int = 0, received: int = 0) -> None:
    Client.objects.filter(pk=client.pk).update(
        bytes_sent=F("bytes_sent") + sent, bytes_received=F("bytes_received") + received
    )


def client_leave(*, client: Client) -> None:
    client_transition(client=client, to=ClientStatus.LEFT, reason="said goodbye")


def client_kick(*, client: Client, actor: str) -> None:
    if client.status in GONE_STATUSES:
        raise Conflict(f"client {client.pk} already {client.status}", "client_gone")
    client_transition(client=client, to=ClientStatus.KICKED, reason="kicked by operator", actor=actor)


def client_pause(*, client: Client, actor: str) -> None:
    if client.status in GONE_STATUSES:
        raise Conflict(f"client {client.pk} already {client.status}", "client_gone")
    client_transition(client=client, to=ClientStatus.PAUSED, reason="paused by operator", actor=actor)


def client_resume(*, client: Client, actor: str) -> None:
    if client.status != ClientStatus.PAUSED:
        raise Conflict(f"client {client.pk} is {client.status}, not paused", "not_paused")
    client_transition(client=client, to=ClientStatus.READY, reason="resumed by operator", actor=actor)
