"""Every client status change goes through ``client_transition``: one guarded write, one history
row, one event. The clients app knows nothing of runs' rounds: it sends ``clients.signals`` and
the round engine listens."""
import ipaddress
import logging
import threading
import time
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from fedplatform.audit import audit_record
from fedplatform.errors import Conflict, Forbidden
from fedplatform.events import emit
from fedplatform.prepared import PreparedInsert, PreparedUpdate
from fedplatform.writes import one_statement

from .models import (
    DROPPING_STATUSES,
    GONE_STATUSES,
    SELECTABLE_STATUSES,
    Admission,
    Ban,
    Client,
    ClientEvent,
    ClientStatus,
    hash_token,
    new_token,
    unusable_token_hash,
)
from .serializers import ClientSerializer
from .signals import client_available, client_dropped

# ``last_seen`` is written at most this often per client: an idle poll costs no write.
LAST_SEEN_RESOLUTION = timedelta(seconds=5)
PROGRESS_RESOLUTION = 0.01

log = logging.getLogger("fedplatform.clients")

# Which moves are legal; anything else is refused, so a late request cannot resurrect a client.
ALLOWED: dict[str, set[str]] = {
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


_serializers = threading.local()


def client_snapshot(client: Client) -> dict:
    """The one serialised shape of a client, for the API's events and the dashboard alike."""
    # One serializer per thread, reused: building its fields costs ten times what rendering does.
    serializer = getattr(_serializers, "client", None)
    if serializer is None:
        serializer = _serializers.client = ClientSerializer()
    return dict(serializer.to_representation(client))


# The statements of every device's status changes and liveness, compiled once (fedplatform.prepared).
_move = PreparedUpdate(
    lambda pk, current, to: (Client.objects.filter(pk=pk, status=current), {"status": to}), int, str, str
)
_move_and_reset_progress = PreparedUpdate(
    lambda pk, current, to: (Client.objects.filter(pk=pk, status=current), {"status": to, "progress": 0.0}),
    int, str, str,
)
_move_on_first_poll = PreparedUpdate(
    lambda pk, current, to, at: (
        Client.objects.filter(pk=pk, status=current, polled_at__isnull=True),
        {"status": to, "progress": 0.0, "polled_at": at},
    ),
    int, str, str, datetime,
)
_new_event = PreparedInsert(ClientEvent)
_seen = PreparedUpdate(lambda pk, at: (Client.objects.filter(pk=pk), {"last_seen": at}), int, datetime)
_progressed = PreparedUpdate(lambda pk, progress: (Client.objects.filter(pk=pk), {"progress": progress}), int, float)
_seen_and_progressed = PreparedUpdate(
    lambda pk, at, progress: (Client.objects.filter(pk=pk), {"last_seen": at, "progress": progress}),
    int, datetime, float,
)
_first_poll = PreparedUpdate(
    lambda pk, at: (Client.objects.filter(pk=pk, polled_at__isnull=True), {"polled_at": at}), int, datetime
)
_new_client = PreparedInsert(Client)
_counted = PreparedUpdate(
    lambda pk, sent, received: (
        Client.objects.filter(pk=pk),
        {"bytes_sent": F("bytes_sent") + sent, "bytes_received": F("bytes_received") + received},
    ),
    int, int, int,
)
_fetched = PreparedUpdate(
    lambda pk, received, held, at: (
        Client.objects.filter(pk=pk),
        {"bytes_received": F("bytes_received") + received, "held_version": held, "last_seen": at},
    ),
    int, int, int, datetime,
)


def client_transition(
    *, client: Client, to: str, reason: str = "", actor: str = "", round=None, first_poll: bool = False
) -> bool:
    """Move ``client`` to ``to`` if that move is legal from its current (database) status.

    The conditional UPDATE makes the check and the write one step, safe across processes.
    Returns whether the client moved; ``client`` holds its status afterwards either way.
    ``first_poll``: the move is made by the device's first request for work, which the same
    UPDATE records (``client_polled``): a joining device's first poll is one write, not two.
    """
    changes: dict[str, Any] = {"status": to}
    if to != ClientStatus.TRAINING:
        changes["progress"] = 0.0
    if first_poll:
        changes["polled_at"] = timezone.now()
    with transaction.atomic():
        # Guess the status this object holds; only when another request moved it first is it read.
        current: str | None = client.status
        moved = 0
        for attempt in range(2):
            if current is None or current == to:
                break
            if current in GONE_STATUSES or (to not in DROPPING_STATUSES and to not in ALLOWED[current]):
                break
            if first_poll:
                moved = _move_on_first_poll.run(client.pk, current, to, changes["polled_at"])
            elif to == ClientStatus.TRAINING:
                moved = _move.run(client.pk, current, to)
            else:
                moved = _move_and_reset_progress.run(client.pk, current, to)
            if moved or attempt:
                break
            current = Client.objects.filter(pk=client.pk).values_list("status", flat=True).first()
        if not moved or current is None:  # (a move always starts from a known status)
            client.refresh_from_db()
            return False
        _new_event.create(
            client=client, from_status=current, to_status=to, reason=reason, actor=actor, round=round
        )
        # What this UPDATE wrote; other columns are as the caller last read them.
        for field, value in changes.items():
            setattr(client, field, value)
        if to in DROPPING_STATUSES:
            client_dropped.send(sender=Client, client=client)
        elif to in SELECTABLE_STATUSES:
            client_available.send(sender=Client, client=client)
        emit("client.status", client_snapshot(client))
    return True


def normal_address(value: str | None) -> str | None:
    """An IP address as the database stores it, or None for anything that is not one."""
    try:
        return str(ipaddress.ip_address((value or "").strip()))
    except ValueError:
        return None


def _is_banned(address: str) -> bool:
    # Every registration asks, and almost never finds one: one indexed read, its SQL written once.
    # PostgreSQL stores addresses as inet, and a text parameter must say so.
    cast = "::inet" if connection.vendor == "postgresql" else ""
    sql = f"SELECT 1 FROM {Ban._meta.db_table} WHERE address = %s{cast} LIMIT 1"
    with connection.cursor() as cursor:
        cursor.execute(sql, [address])
        return cursor.fetchone() is not None


def registration_check(*, address: str | None) -> None:
    """Refuse a registration identity an operator banned (``403 banned``)."""
    if address is not None and _is_banned(address):
        raise Forbidden("registrations from this address are banned by an operator", "banned")


def client_register(
    *, run, name: str, num_examples: int, device_info: dict, accepts: list[str], address: str | None = None,
) -> tuple[Client, str]:
    """Create a client and return it with its secret token (shown this once; only its hash is
    stored). With ``FEDPLATFORM_REQUIRE_APPROVAL`` it waits for an operator (admission
    ``pending``) and no round selects it until then."""
    if run.is_terminal:
        raise Conflict(f"run {run.pk} is {run.status} and takes no clients", "run_closed")
    registration_check(address=address)
    token = new_token()
    admission = Admission.PENDING if settings.FEDPLATFORM["REQUIRE_APPROVAL"] else Admission.APPROVED
    with transaction.atomic():
        client = _new_client.create(
            run=run,
            name=name,
            num_examples=num_examples,
            device_info=device_info,
            accepts=accepts,
            token_hash=hash_token(token),
            last_seen=timezone.now(),
            admission=admission,
            registered_from=address,
        )
        reason = "registered, waiting for approval" if admission == Admission.PENDING else "registered"
        _new_event.create(client=client, from_status=ClientStatus.JOIN, to_status=ClientStatus.JOIN, reason=reason)
        emit("client.status", client_snapshot(client))
    # No round can select it before its first poll (ClientQuerySet.selectable): that poll, not
    # the registration, asks the engine for a round.
    return client, token


def client_polled(*, client: Client) -> None:
    """The device asked for work: it has proven it is alive and holds its token. Written once."""
    if client.polled_at is not None:
        return
    now = timezone.now()
    with transaction.atomic():
        # A client that just joined becomes ready on this poll, and that move announces it.
        first = _first_poll.run(client.pk, now)
        if first and client.status == ClientStatus.READY and client.admission == Admission.APPROVED:
            client_available.send(sender=Client, client=client)
    client.polled_at = now


def client_rotate_token(*, client: Client) -> str:
    """A new token for the device, which it asked for with its current one; that one stops
    working at once. Two racing rotations: the second finds the hash changed and is refused."""
    token = new_token()
    with transaction.atomic():
        if not Client.objects.filter(pk=client.pk, token_hash=client.token_hash).update(token_hash=hash_token(token)):
            raise Conflict("the token was rotated or revoked meanwhile", "token_changed")
        ClientEvent.objects.create(client=client, from_status=client.status, to_status=client.status,
                                   reason="token rotated")
    client.token_hash = hash_token(token)
    return token


def client_revoke(*, client: Client, actor: str) -> None:
    """An operator revokes the client's token (say it leaked): it no longer authenticates (401)
    and the client leaves its run. The device may register again, unless banned."""
    with transaction.atomic():
        Client.objects.filter(pk=client.pk).update(token_hash=unusable_token_hash())
        audit_record(actor=actor, action="client.revoke", target_type="client", target_id=client.pk,
                     run_id=client.run_id)
        client_transition(client=client, to=ClientStatus.LEFT, reason="token revoked by operator", actor=actor)


def client_approve(*, client: Client, actor: str) -> None:
    if client.admission != Admission.PENDING or client.status in GONE_STATUSES:
        raise Conflict(f"client {client.pk} is not waiting for approval", "not_pending")
    with transaction.atomic():
        if not Client.objects.filter(pk=client.pk, admission=Admission.PENDING).update(admission=Admission.APPROVED):
            raise Conflict(f"client {client.pk} is not waiting for approval", "not_pending")
        client.refresh_from_db()
        ClientEvent.objects.create(client=client, from_status=client.status, to_status=client.status,
                                   reason="approved by operator", actor=actor)
        audit_record(actor=actor, action="client.approve", target_type="client", target_id=client.pk,
                     run_id=client.run_id)
        if client.status in SELECTABLE_STATUSES and client.polled_at is not None:
            client_available.send(sender=Client, client=client)
        emit("client.status", client_snapshot(client))


def client_reject(*, client: Client, actor: str, ban: bool = False) -> None:
    """Refuse a pending client: its token stops working (``403 kicked``), and with ``ban`` its
    registration address may not register again."""
    if client.admission != Admission.PENDING or client.status in GONE_STATUSES:
        raise Conflict(f"client {client.pk} is not waiting for approval", "not_pending")
    with transaction.atomic():
        Client.objects.filter(pk=client.pk).update(admission=Admission.REJECTED)
        client.admission = Admission.REJECTED
        audit_record(actor=actor, action="client.reject", target_type="client", target_id=client.pk,
                     run_id=client.run_id, details={"ban": ban})
        client_transition(client=client, to=ClientStatus.KICKED, reason="rejected by operator", actor=actor)
        if ban:
            _ban(client=client, actor=actor, reason="rejected")


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
        moved = abs(progress - (client.progress or 0.0)) >= PROGRESS_RESOLUTION
        if moved or (progress == 1.0) != (client.progress == 1.0):
            changes["progress"] = progress
    if changes:
        with one_statement():
            if "progress" not in changes:
                _seen.run(client.pk, changes["last_seen"])
            elif "last_seen" not in changes:
                _progressed.run(client.pk, changes["progress"])
            else:
                _seen_and_progressed.run(client.pk, changes["last_seen"], changes["progress"])
        for field, value in changes.items():
            setattr(client, field, value)
    if client.status == ClientStatus.OFFLINE:
        client_transition(client=client, to=ClientStatus.READY, reason="back online")
    return bool(changes)


def client_count_bytes(*, client: Client, sent: int = 0, received: int = 0) -> None:
    with one_statement():
        _counted.run(client.pk, sent, received)


def client_fetched(*, client: Client, received: int, held_version: int) -> None:
    """A model download: the bytes sent, the version the device now holds, and that it is alive,
    in one statement (a round's devices all download at the moment it opens); an offline client
    comes back as ready, as with ``client_seen``."""
    now = timezone.now()
    with one_statement():
        _fetched.run(client.pk, received, held_version, now)
    client.last_seen, client.held_version = now, held_version
    if client.status == ClientStatus.OFFLINE:
        client_transition(client=client, to=ClientStatus.READY, reason="back online")


def client_leave(*, client: Client) -> None:
    client_transition(client=client, to=ClientStatus.LEFT, reason="said goodbye")


def client_kick(*, client: Client, actor: str, ban: bool = False) -> None:
    """Remove the client (its token answers ``403 kicked`` from then on); with ``ban``, also
    refuse new registrations from the address it registered from, so it cannot simply come
    back with a new token."""
    if client.status in GONE_STATUSES:
        raise Conflict(f"client {client.pk} already {client.status}", "client_gone")
    with transaction.atomic():
        audit_record(actor=actor, action="client.kick", target_type="client", target_id=client.pk,
                     run_id=client.run_id, details={"ban": ban})
        client_transition(client=client, to=ClientStatus.KICKED, reason="kicked by operator", actor=actor)
        if ban:
            _ban(client=client, actor=actor, reason="kicked")


def client_ban(*, client: Client, actor: str) -> Ban:
    """Kick the client if it is still there, and ban its registration address."""
    with transaction.atomic():
        if client.status not in GONE_STATUSES:
            client_transition(client=client, to=ClientStatus.KICKED, reason="banned by operator", actor=actor)
        audit_record(actor=actor, action="client.ban", target_type="client", target_id=client.pk,
                     run_id=client.run_id, details={"address": client.registered_from})
        return _ban(client=client, actor=actor, reason="banned")


def _ban(*, client: Client, actor: str, reason: str) -> Ban:
    if client.registered_from is None:
        raise Conflict(f"client {client.pk} has no registration address to ban", "no_address")
    ban, _ = Ban.objects.get_or_create(
        address=client.registered_from,
        defaults={"actor": actor, "client": client, "reason": f"{reason}: {client.name} (#{client.pk})"[:200]},
    )
    return ban


def client_pause(*, client: Client, actor: str) -> None:
    if client.status in GONE_STATUSES:
        raise Conflict(f"client {client.pk} already {client.status}", "client_gone")
    with transaction.atomic():
        audit_record(actor=actor, action="client.pause", target_type="client", target_id=client.pk,
                     run_id=client.run_id)
        client_transition(client=client, to=ClientStatus.PAUSED, reason="paused by operator", actor=actor)


def client_resume(*, client: Client, actor: str) -> None:
    if client.status != ClientStatus.PAUSED:
        raise Conflict(f"client {client.pk} is {client.status}, not paused", "not_paused")
    with transaction.atomic():
        audit_record(actor=actor, action="client.resume", target_type="client", target_id=client.pk,
                     run_id=client.run_id)
        client_transition(client=client, to=ClientStatus.READY, reason="resumed by operator", actor=actor)


# ------------------------------------------------------------------------------ stale cleanup

# At most this many rows a sweep deletes: a flood of millions is worked off over several sweeps
# instead of in one long write transaction.
PRUNE_BATCH = 1000
PRUNE_EVERY_SECONDS = 60
_last_prune = 0.0


def clients_prune_stale(*, now=None) -> int:
    """Delete registrations that never asked for work within ``FEDPLATFORM_STALE_REGISTRATION_SECONDS``:
    a device that registers polls at once, so these are abandoned or fake. They were never
    selectable, so no round or update refers to them. Returns how many went."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.FEDPLATFORM["STALE_REGISTRATION_SECONDS"])
    stale = Client.objects.filter(polled_at__isnull=True, created_at__lt=cutoff, updates__isnull=True)
    ids = list(stale.order_by("pk").values_list("pk", flat=True)[:PRUNE_BATCH])
    if not ids:
        return 0
    with transaction.atomic():
        deleted = Client.objects.filter(pk__in=ids, polled_at__isnull=True).delete()[1].get(Client._meta.label, 0)
    log.info("deleted %s registration(s) that never asked for work", deleted)
    return deleted


def clients_prune_stale_now_and_then() -> int:
    """``clients_prune_stale`` at most once a minute per process: the engine sweeps every few seconds."""
    global _last_prune
    if time.monotonic() - _last_prune < PRUNE_EVERY_SECONDS:
        return 0
    _last_prune = time.monotonic()
    return clients_prune_stale()
