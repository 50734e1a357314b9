from typing import TYPE_CHECKING

from rest_framework import serializers

from fedcore import codec
from fedcore.tasks.registry import BUILTIN_TASK
from fedplatform.serializers import ModelSerializer

from fedcore.broadcast import DEFAULT_DOWNLOAD_ENCODING

from .downloads import DOWNLOAD_ENCODINGS
from .models import TUNABLE_FIELDS, ModelVersion, Round, Run, RunConfig, RoundStatus, Update

if TYPE_CHECKING:
    from clients.models import Client

CONFIG_FIELDS = [
    "name", "task", "task_config", "arch", "dataset", "strategy", "strategy_config", "rounds", "min_clients",
    "clients_per_round", "min_updates", "local_epochs", "batch_size", "learning_rate", "momentum", "weight_decay",
    "round_timeout",
    "offline_after", "upload_encoding", "download_encoding", "seed", "allow_backfill",
]
DEFAULT_UPLOAD_ENCODING = "int4"
# Fixed once a run exists: changing them would invalidate every stored version and update.
IMMUTABLE_FIELDS = {"task", "task_config", "seed", "strategy"}


class RunSerializer(ModelSerializer):
    # int4 with error feedback: about a quarter of the prototype's bytes at float32's accuracy
    # (benchmarks/results/accuracy_cost_*.md).
    upload_encoding = serializers.ChoiceField(choices=codec.ENCODINGS, default=DEFAULT_UPLOAD_ENCODING)
    task = serializers.CharField(max_length=200, default=BUILTIN_TASK,
                                 help_text="an offered task (GET tasks/), package.module:attribute")
    task_config = serializers.JSONField(default=dict,
                                        help_text="the task's configuration; defaults fill what is left out")
    # Shorthand for the built-in image task's configuration (task_config arch / dataset).
    arch = serializers.CharField(max_length=32, required=False, write_only=True)
    dataset = serializers.CharField(max_length=32, required=False, write_only=True)
    # int4 deltas of the broadcast replica (fedcore.broadcast says why).
    download_encoding = serializers.ChoiceField(choices=DOWNLOAD_ENCODINGS, default=DEFAULT_DOWNLOAD_ENCODING)
    strategy_config = serializers.JSONField(
        default=dict, help_text="the strategy's parameters (GET strategies/ lists them); defaults fill what is left out"
    )
    current_version = serializers.SerializerMethodField()
    completed_rounds = serializers.SerializerMethodField()
    config_version = serializers.SerializerMethodField(help_text="the newest configuration version")
    config_in_force = serializers.SerializerMethodField(
        help_text=("the configuration version of the open (or last) round; "
                   "below config_version means a change is pending")
    )
    config = serializers.SerializerMethodField(help_text="every tunable field as it stands now")

    class Meta:
        model = Run
        fields = [
            "id", "status", *CONFIG_FIELDS, "manifest_digest", "current_version", "completed_rounds", "config_version",
            "config_in_force", "config", "created_at", "started_at", "finished_at",
        ]
        read_only_fields = ["id", "status", "manifest_digest", "created_at", "started_at", "finished_at"]

    def get_config_version(self, run: Run) -> int | None:
        return run.configs.order_by("-version").values_list("version", flat=True).first()

    def get_config_in_force(self, run: Run) -> int | None:
        last = run.round_set.exclude(status=RoundStatus.ABANDONED).order_by("-number").select_related("config").first()
        return last.config.version if last else None

    def get_config(self, run: Run) -> dict:
        return {field: getattr(run, field) for field in TUNABLE_FIELDS}

    def get_current_version(self, run: Run) -> int | None:
        version = run.versions.order_by("-number").first()
        return version.number if version else None

    def get_completed_rounds(self, run: Run) -> int:
        return run.round_set.filter(status="closed").count()

    def validate(self, attrs: dict) -> dict:
        if self.instance is not None:
            if attrs.keys() & {"arch", "dataset"}:
                raise serializers.ValidationError({"task_config": "cannot change once the run exists"})
            changed = {f for f in IMMUTABLE_FIELDS & attrs.keys() if attrs[f] != getattr(self.instance, f)}
            if changed:
                raise serializers.ValidationError({f: "cannot change once the run exists" for f in changed})
        min_clients = attrs.get("min_clients", getattr(self.instance, "min_clients", 1))
        per_round = attrs.get("clients_per_round", getattr(self.instance, "clients_per_round", 1))
        if per_round < 1 or min_clients < 1:
            raise serializers.ValidationError("clients_per_round and min_clients must be at least 1")
        if attrs.get("learning_rate", 1.0) <= 0:
            raise serializers.ValidationError({"learning_rate": "must be positive"})
        return attrs


class RunConfigSerializer(ModelSerializer):
    class Meta:
        model = RunConfig
        fields = ["version", "values", "changed", "author", "created_at"]


class ModelVersionSerializer(ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = ["number", "sha256", "size_bytes", "float32_bytes", "metrics", "created_at"]


class UpdateSerializer(ModelSerializer):
    client_name = serializers.CharField(source="client.name", read_only=True)

    class Meta:
        model = Update
        fields = ["client", "client_name", "num_examples", "bytes_wire", "encoding", "sha256", "metrics",
                  "decode_seconds", "received_at"]


class RoundSerializer(ModelSerializer):
    base_version = serializers.IntegerField(source="base_version.number", read_only=True)
    result_version = serializers.IntegerField(source="result_version.number", read_only=True, allow_null=True,
                                              default=None)
    expected: "serializers.PrimaryKeyRelatedField[Client]" = serializers.PrimaryKeyRelatedField(
        many=True, read_only=True)
    config_version = serializers.IntegerField(source="config.version", read_only=True)
    updates = UpdateSerializer(many=True, read_only=True)
    received = serializers.SerializerMethodField(help_text="the clients whose update was accepted")
    open_places = serializers.SerializerMethodField(help_text="places a newcomer may still take (backfill)")

    class Meta:
        model = Round
        fields = [
            "id", "run", "number", "status", "base_version", "result_version", "expected", "received", "open_places",
            "updates", "config_version", "hyperparameters", "upload_encoding", "opened_at", "deadline", "closed_at",
            "metrics",
        ]

    def get_open_places(self, rnd: Round) -> int:
        if rnd.status != RoundStatus.OPEN or not rnd.run.allow_backfill:
            return 0
        return max(0, rnd.config.values["clients_per_round"] - len(rnd.expected.all()))

    def get_received(self, rnd: Round) -> list[int]:
        return sorted(u.client_id for u in rnd.updates.all())
