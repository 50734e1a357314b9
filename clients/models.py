import hashlib
import secrets

from django.db import models

from fedplatform.identity import Device


class ClientStatus(models.TextChoices):
    JOIN = "join", "joined"
    READY = "ready", "ready"
    TRAINING = "training", "training"
    FINISH = "finish", "update sent"
    UPDATE = "update", "fetching model"
    PAUSED = "paused", "paused"
    OFFLINE = "offline", "offline"
    LEFT = "left", "left"
    KICKED = "kicked", "kicked"


# The one home of the client status sets; everything else imports them from here.
# Clients in these states never come back: their token no longer authenticates.
GONE_STATUSES = frozenset({ClientStatus.LEFT, ClientStatus.KICKED})
# Clients in these states may be chosen for a round.
SELECTABLE_STATUSES = frozenset({ClientStatus.READY, ClientStatus.JOIN})
# Alive and not parked by an operator: the ones the offline sweep watches.
LIVE_STATUSES = frozenset(
    {ClientStatus.JOIN, ClientStatus.READY, ClientStatus.TRAINING, ClientStatus.FINISH, ClientStatus.UPDATE}
)
# States that mean "between rounds" once the client has no pending round: its next poll makes it ready.
IDLE_STATUSES = frozenset({ClientStatus.JOIN, ClientStatus.FINISH, ClientStatus.UPDATE, ClientStatus.TRAINING})
# Moves operators and the sweep may make from any live state; each takes the client out of the
# round that waits for it.
DROPPING_STATUSES = frozenset({ClientStatus.PAUSED, ClientStatus.OFFLINE, ClientStatus.LEFT, ClientStatus.KICKED})


def hash_token(token: str) -> str:
    # Tokens are 256 random bits, so one unsalted SHA-256 is enough: no dictionary covers them,
    # and a lookup by hash stays one indexed equality.
    return hashlib.sha256(token.encode()).hexdigest()


def unusable_token_hash() -> str:
    """What a revoked token's column holds: no token hashes to it (it is not 64 hex digits)."""
    return "revoked:" + secrets.token_hex(16)


def new_token() -> str:
    return secrets.token_urlsafe(32)


class Admission(models.TextChoices):
    """Whether an operator let the client in: only approved clients are selected for rounds."""

    APPROVED = "approved", "approved"
    PENDING = "pending", "waiting for approval"
    REJECTED = "rejected", "rejected"


class ClientQuerySet(models.QuerySet):
    def selectable(self, *, seen_since):
        """Clients a round may choose: in a selectable state, admitted, heard from since
        ``seen_since``, and proven alive by asking for work at least once after registering.

        The last condition is what a registration flood cannot fake cheaply: each fake client
        must also keep polling with its own token, or it is never chosen (and the sweep deletes
        registrations that never polled, ``clients.services.clients_prune_stale``).
        """
        return self.filter(
            status__in=SELECTABLE_STATUSES, admission=Admission.APPROVED,
            polled_at__isnull=False, last_seen__gte=seen_since,
        )


class Client(Device, models.Model):
    run = models.ForeignKey("rounds.Run", on_delete=models.CASCADE, related_name="clients")
    name = models.CharField(max_length=100)
    status = models.CharField(max_length=16, choices=ClientStatus.choices, default=ClientStatus.JOIN)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    num_examples = models.PositiveIntegerField(default=0)
    device_info = models.JSONField(default=dict, blank=True)
    accepts = models.JSONField(default=list, blank=True, help_text="encodings the client decodes")
    progress = models.FloatField(default=0.0, help_text="local training progress, 0..1")
    held_version = models.PositiveIntegerField(null=True, blank=True)
    bytes_sent = models.BigIntegerField(default=0)
    bytes_received = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    polled_at = models.DateTimeField(
        null=True, blank=True, help_text="the first time the device asked for work: its proof of liveness",
    )
    admission = models.CharField(max_length=16, choices=Admission.choices, default=Admission.APPROVED)
    registered_from = models.GenericIPAddressField(
        null=True, blank=True, help_text="the address it registered from: what a ban refuses",
    )

    objects = ClientQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["run", "status"]), models.Index(fields=["polled_at", "created_at"])]

    def __str__(self) -> str:
        return f"{self.name} (#{self.pk})"

    # A device authenticates as itself (see clients.auth); these let DRF's permission
    # classes treat it like a user that is never staff.
    is_authenticated = True
    is_staff = False
    is_active = True


class ClientEvent(models.Model):
    """One row per status change: the history behind the dashboard's timelines."""

    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=16, choices=ClientStatus.choices)
    to_status = models.CharField(max_length=16, choices=ClientStatus.choices)
    round = models.ForeignKey("rounds.Round", null=True, blank=True, on_delete=models.SET_NULL)
    reason = models.CharField(max_length=200, blank=True)
    actor = models.CharField(max_length=150, blank=True, help_text="operator username, or empty")
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]


class Ban(models.Model):
    """A registration identity an operator refused: registration and enrollment from it answer
    ``403 banned``. Deleting the row (in the admin) lifts the ban."""

    address = models.GenericIPAddressField(unique=True)
    reason = models.CharField(max_length=200, blank=True)
    actor = models.CharField(max_length=150, blank=True)
    client = models.ForeignKey(Client, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                               help_text="the client whose kick banned it")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return self.address
