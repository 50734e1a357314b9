from django.db import models
from django.db.models import Q
from django.utils import timezone

from fedcore.broadcast import DEFAULT_DOWNLOAD_ENCODING
from fedcore.strategies import DEFAULT_STRATEGY, STRATEGIES
from fedcore.tasks.registry import BUILTIN_TASK

STRATEGY_CHOICES = [(spec.name, spec.title) for spec in STRATEGIES.values()]


class RunStatus(models.TextChoices):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"


TERMINAL_RUN_STATUSES = frozenset({RunStatus.FINISHED, RunStatus.STOPPED, RunStatus.FAILED})


class Run(models.Model):
    """One federated training job and its configuration."""

    name = models.CharField(max_length=100)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.DRAFT)
    # What is trained: a fedcore task by import path, its validated configuration, and the
    # fingerprint of the model it builds, which devices must match to join.
    task = models.CharField(max_length=200, default=BUILTIN_TASK, help_text="package.module:attribute")
    task_config = models.JSONField(default=dict, blank=True, help_text="the task's configuration, defaults filled in")
    manifest_digest = models.CharField(max_length=64, editable=False, help_text="tensor names, dtypes and shapes")
    # How updates become the next model (fedcore.strategies); its parameters are tunable.
    strategy = models.CharField(max_length=32, choices=STRATEGY_CHOICES, default=DEFAULT_STRATEGY)
    strategy_config = models.JSONField(default=dict, blank=True,
                                       help_text="the strategy's parameters, defaults filled in")
    rounds = models.PositiveIntegerField(default=5, help_text="total rounds to train")
    min_clients = models.PositiveIntegerField(default=2, help_text="ready clients needed to open a round")
    clients_per_round = models.PositiveIntegerField(default=3)
    min_updates = models.PositiveIntegerField(default=1, help_text="updates needed at the deadline")
    local_epochs = models.PositiveIntegerField(default=1)
    batch_size = models.PositiveIntegerField(default=32)
    learning_rate = models.FloatField(default=0.05)
    momentum = models.FloatField(default=0.9)
    weight_decay = models.FloatField(default=0.0)
    round_timeout = models.PositiveIntegerField(default=600, help_text="seconds from open to deadline")
    offline_after = models.PositiveIntegerField(default=60, help_text="seconds of silence before offline")
    # Validated against fedcore.codec's encodings by the API, so a new encoding needs no migration.
    upload_encoding = models.CharField(
        max_length=32, default="int4", help_text="updates: 4-bit per-row deltas with error feedback by default"
    )
    download_encoding = models.CharField(
        max_length=32, default=DEFAULT_DOWNLOAD_ENCODING,
        help_text="downloads: 4-bit deltas of the broadcast replica, with the server's error feedback, by default",
    )
    seed = models.PositiveIntegerField(default=0)
    allow_backfill = models.BooleanField(
        default=False, help_text="let clients that join mid-round fill an open round's empty places"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Set (conditionally) by a request that wants the engine to look at the run, cleared by the
    # engine task that does: a burst of requests enqueues one task, not one each.
    tick_requested_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.name} (#{self.pk})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_RUN_STATUSES

    def hyperparameters(self) -> dict:
        return {
            "local_epochs": self.local_epochs,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
        }


# What an operator may change while a run trains; each change is a new RunConfig version that
# applies from the next round that opens.
TUNABLE_FIELDS = (
    "rounds", "min_clients", "clients_per_round", "min_updates", "local_epochs", "batch_size",
    "learning_rate", "momentum", "weight_decay", "round_timeout", "offline_after",
    "upload_encoding", "download_encoding", "allow_backfill", "strategy_config",
)


class RunConfig(models.Model):
    """One version of a run's configuration: who changed what, when."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="configs")
    version = models.PositiveIntegerField()
    values = models.JSONField(help_text="every tunable field as it stood after this change")
    changed = models.JSONField(default=list, help_text="the fields this version changed")
    author = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "version"]
        constraints = [models.UniqueConstraint(fields=["run", "version"], name="unique_config_version")]

    def __str__(self) -> str:
        return f"{self.run} config v{self.version}"


def version_upload_to(instance: "ModelVersion", filename: str) -> str:
    return f"runs/{instance.run_id}/versions/{filename}"


class EvaluationStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped", "skipped (the server holds no test data)"


class ModelVersion(models.Model):
    """A global model: version 0 is the initial model, version r the result of round r."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    blob = models.FileField(upload_to=version_upload_to, max_length=300)
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField(help_text="encoded size on disk (float32, lossless)")
    float32_bytes = models.BigIntegerField(help_text="raw float32 size, the reference for ratios")
    metrics = models.JSONField(default=dict, blank=True)
    # The server optimizer's state after this version (momentum, Adam moments; float32, lossless),
    # read by the round that starts from it: a restart or an audit replays every version exactly.
    strategy_state = models.FileField(upload_to=version_upload_to, max_length=300, blank=True)
    strategy_state_sha256 = models.CharField(max_length=64, blank=True)
    evaluation = models.CharField(
        max_length=16, choices=EvaluationStatus.choices, default=EvaluationStatus.PENDING,
        help_text="the server-side test evaluation, a task of its own",
    )
    evaluation_claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "number"]
        constraints = [models.UniqueConstraint(fields=["run", "number"], name="unique_version_per_run")]

    def __str__(self) -> str:
        return f"{self.run} v{self.number}"


class Broadcast(models.Model):
    """What devices hold of a version (``fedcore.broadcast``): the replica x^_t, and the one encoded
    delta from the previous version's replica that every device holding that one is sent.

    Written once per version by the engine (``rounds.broadcast``), right after the version; the
    global model itself stays exact in ``ModelVersion.blob``.
    """

    version = models.OneToOneField(ModelVersion, on_delete=models.CASCADE, related_name="broadcast")
    encoding = models.CharField(max_length=32, help_text="the download encoding of the delta")
    # Empty where no delta leads here (version 0, a float32 step that would not be exact, a chain
    # that restarts): devices behind get the snapshot.
    delta_blob = models.FileField(max_length=300, blank=True)
    delta_sha256 = models.CharField(max_length=64, blank=True)
    delta_bytes = models.BigIntegerField(null=True, blank=True)
    # The replica as a lossless float32 snapshot (the version's own blob where they are equal).
    replica_blob = models.FileField(max_length=300)
    replica_sha256 = models.CharField(max_length=64)
    replica_bytes = models.BigIntegerField()
    replica_digest = models.CharField(max_length=64, help_text="fedcore.broadcast.digest of the replica's bits")
    exact = models.BooleanField(help_text="the replica is the global model, bit for bit")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["version"]

    def __str__(self) -> str:
        return f"{self.version} broadcast ({self.encoding})"


class RoundStatus(models.TextChoices):
    OPEN = "open"
    CLOSING = "closing", "closing (an engine worker aggregates it)"
    CLOSED = "closed"
    ABANDONED = "abandoned"


# Rounds that still hold their place: at most one per run (see Round's constraints).
LIVE_ROUND_STATUSES = frozenset({RoundStatus.OPEN, RoundStatus.CLOSING})


class Round(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="round_set")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=RoundStatus.choices, default=RoundStatus.OPEN)
    base_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    result_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    expected = models.ManyToManyField("clients.Client", related_name="expected_rounds", blank=True)
    config = models.ForeignKey(RunConfig, on_delete=models.PROTECT, related_name="rounds")
    hyperparameters = models.JSONField(default=dict, help_text="what this round's tasks carry")
    upload_encoding = models.CharField(max_length=16)
    opened_at = models.DateTimeField(auto_now_add=True)
    deadline = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    # The engine worker's claim while it aggregates: a random token and when it was last renewed.
    # A claim older than the lease is presumed dead (the worker was killed) and is taken back.
    claim = models.CharField(max_length=32, blank=True, editable=False)
    claimed_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["run", "number", "id"]
        constraints = [
            # An abandoned round is reopened under the same number; only one may succeed or be open.
            models.UniqueConstraint(
                fields=["run", "number"],
                condition=~Q(status="abandoned"),
                name="one_live_round_per_number",
            ),
            # At most one open (or closing) round per run, however many processes race to open one.
            models.UniqueConstraint(
                fields=["run"], condition=Q(status__in=["open", "closing"]), name="one_live_round_per_run"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.run} round {self.number}"


def update_upload_to(instance: "Update", filename: str) -> str:
    return f"runs/{instance.round.run_id}/rounds/{instance.round.number}/{filename}"


class Update(models.Model):
    """One client's accepted contribution to one round."""

    round = models.ForeignKey(Round, on_delete=models.CASCADE, related_name="updates")
    client = models.ForeignKey("clients.Client", on_delete=models.CASCADE, related_name="updates")
    blob = models.FileField(upload_to=update_upload_to, max_length=300)
    sha256 = models.CharField(max_length=64)
    encoding = models.CharField(max_length=32)
    num_examples = models.PositiveIntegerField()
    bytes_wire = models.BigIntegerField()
    metrics = models.JSONField(default=dict, blank=True)
    decode_seconds = models.FloatField(default=0.0)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["round", "id"]
        constraints = [models.UniqueConstraint(fields=["round", "client"], name="one_update_per_client")]

    def __str__(self) -> str:
        return f"{self.round} from {self.client}"


class Download(models.Model):
    """One model download the server answered to a device selected for a round: what it sent,
    counted by the server (a device's own report is not trusted for accounting)."""

    round = models.ForeignKey(Round, on_delete=models.CASCADE, related_name="downloads")
    client = models.ForeignKey("clients.Client", on_delete=models.CASCADE, related_name="downloads")
    version = models.PositiveIntegerField()
    base_version = models.PositiveIntegerField(null=True, blank=True, help_text="what the device said it held")
    kind = models.CharField(max_length=16, help_text="snapshot, delta or chain")
    bytes_wire = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["round", "id"]

    def __str__(self) -> str:
        return f"{self.round} to {self.client}: {self.bytes_wire} bytes"


class ExportFormat(models.TextChoices):
    SAFETENSORS = "safetensors", "safetensors (tensors by state_dict name)"
    ONNX = "onnx", "ONNX (the model's graph, for any runtime)"


class ExportStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running", "running (an engine worker renders it)"
    DONE = "done"
    FAILED = "failed"


class ModelExport(models.Model):
    """A global version in a standard file format, rendered once by the engine on the first request
    for it and kept: every later download is the stored file."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="exports")
    format = models.CharField(max_length=16, choices=ExportFormat.choices)
    status = models.CharField(max_length=16, choices=ExportStatus.choices, default=ExportStatus.PENDING)
    blob = models.FileField(max_length=300, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    size_bytes = models.BigIntegerField(default=0)
    error = models.TextField(blank=True, help_text="why rendering failed (delete the row to try again)")
    # When its task was last enqueued: a pending export whose task has long not run is asked for again.
    requested_at = models.DateTimeField(default=timezone.now, editable=False)
    # The engine worker's claim while it renders; older than the lease, the worker is presumed dead.
    claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["version", "format"]
        constraints = [models.UniqueConstraint(fields=["version", "format"], name="one_export_per_format")]

    def __str__(self) -> str:
        return f"{self.version} as {self.format}"
