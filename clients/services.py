"""Every client status change goes through ``client_transition``: one guarded write, one history
row, one event. The clients app knows nothing of runs' rounds: it sends ``clients.signals`` and
the round engine listens."""
from datetime import timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from fedplatform.errors import Conflict
from fedplatform.events import emit

from .models import (
    DROPPING_STATUSES,
    GONE_STATUSES,
    SELECTABLE_STATUSES,
    Client,
    ClientEvent,
    ClientStatus,
    hash_token,
    new_token,
)
from .serializers import ClientSerializer
from .signals import client_available, client_dropped

# ``last_seen`` is written at most this often per client: an idle poll costs no write.
LAST_SEEN_RESOLUTION = timedelta(seconds=5)
PROGRESS_RESOLUTION = 0.01

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


def client_snapshot(client: Client) -> dict:
    """The one serialised shape of a client, for the API's events and the dashboard alike."""
    return dict(ClientSerializer(client).data)


def client_transition(
    *, client: Client, to: str, reason: str = "", actor: str = "", round=None
) -> bool:
    """Move ``client`` to ``to`` if that move is legal from its current (database) status.

    The conditional UPDATE makes the check and the write one step, safe across processes.
    Returns whether the client moved; ``client`` is refreshed either way.
    """
    changes = {"status": to}
    if to != ClientStatus.TRAINING:
        changes["progress"] = 0.0
    with transaction.atomic():
        # Guess the status this object holds; only when another request moved it first is it read.
        current, moved = client.status, 0
        for attempt in range(2):
            if current is None or current == to:
                break
            if current in GONE_STATUSES or (to not in DROPPING_STATUSES and to not in ALLOWED[current]):
                break
            moved = Client.objects.filter(pk=client.pk, status=current).update(**changes)
            if moved or attempt:
                break
            current = Client.objects.filter(pk=client.pk).values_list("status", flat=True).first()
        if not moved:
            client.refresh_from_db()
            return False
        ClientEvent.objects.create(
            client=client, from_status=current, to_status=to, reason=reason, actor=actor, round=round
        )
        client.refresh_from_db()
        if to in DROPPING_STATUSES:
            client_dropped.send(sender=Client, client=client)
        elif to in SELECTABLE_STATUSES:
            client_available.send(sender=Client, client=client)
        emit("client.status", client_snapshot(client))
    return True


def client_register(
    *, run, name: str, num_examples: int, device_info: dict, accepts: list[str]
) -> tuple[Client, str]:
    """Create a client and return it with its secret token (shown this once)."""
    if run.is_terminal:
        raise Conflict(f"run {run.pk} is {run.status} and takes no clients", "run_closed")
    token = new_token()
    with transaction.atomic():
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
        client_available.send(sender=Client, client=client)
        emit("client.status", client_snapshot(client))
    return client, token


def client_seen(*, client: Client, progress: float | None = None) -> bool:
    """Record that the device is alive; an offline client comes back as ready. Returns whether
    anything was written.

    ``last_seen`` is only written when it is older than LAST_SEEN_RESOLUTION, and progress
    when it moved by a percent or more, so polling and fast heartbeats cost reads only.
    """
    now = timezone.now()
    changes: dict = {}
    if client.last_seen is None or now - client.last_seen >= LAST_SEEN_RESOLUTION:
        changes["last_seen"] = now
    if progress is not None:
        progress = max(0.0, min(1.0, float(progress)))
        if abs(progress - (client.progress or 0.0)) >= PROGRESS_RESOLUTION or (progress == 1.0) != (client.progress == 1.0):
            changes["progress"] = progress
    if changes:
        with transaction.atomic():  # a transaction, so SQLite writers queue (fedplatform.sqlite)
            Client.objects.filter(pk=client.pk).update(**changes)
        for field, value in changes.items():
            setattr(client, field, value)
    if client.status == ClientStatus.OFFLINE:
        client_transition(client=client, to=ClientStatus.READY, reason="back online")
    return bool(changes)


def client_count_bytes(*, client: Client, sent: int = 0, received: int = 0, held_version: int | None = None) -> None:
    changes = {"bytes_sent": F("bytes_sent") + sent, "bytes_received": F("bytes_received") + received}
    if held_version is not None:
        changes["held_version"] = held_version
    with transaction.atomic():
        Client.objects.filter(pk=client.pk).update(**changes)


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
