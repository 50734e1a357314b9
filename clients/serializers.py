from rest_framework import serializers

from fedcore.codec import ENCODINGS
from fedplatform.limits import MAX_ID_DIGITS, MAX_NUM_EXAMPLES
from fedplatform.serializers import ModelSerializer, Serializer

from .models import Client

# What a worker sends is one flat object (worker/deviceinfo.py); this leaves room for a little structure.
DEVICE_INFO_DEPTH = 8


class RegisterSerializer(Serializer):
    name = serializers.CharField(max_length=100)
    run = serializers.IntegerField(
        required=False, min_value=1, max_value=2**63 - 1, help_text="default: the newest active run",
    )
    num_examples = serializers.IntegerField(
        min_value=1, max_value=MAX_NUM_EXAMPLES,
        help_text="training examples the device holds: its updates may claim at most this weight",
    )
    device = serializers.DictField(required=False, default=dict)
    accepts = serializers.ListField(
        child=serializers.CharField(max_length=32), required=False, default=list, max_length=32,
        help_text="encodings the device decodes; names this server does not know are ignored",
    )
    enrollment_key = serializers.CharField(required=False, write_only=True, max_length=200)
    task = serializers.CharField(required=False, max_length=200, help_text="the task the device loaded")
    manifest_digest = serializers.RegexField(
        r"^[0-9a-f]{32}$", required=False, help_text="fingerprint of the device's model; must match the run's",
    )

    def validate_accepts(self, value: list[str]) -> list[str]:
        # A newer worker may know encodings this server does not: keep only the ones both know.
        return [name for name in value if name in ENCODINGS]

    def validate_device(self, value: dict) -> dict:
        # Walked without recursion, before anything renders it: JSON nested 900 deep parses, but
        # rendering it (str, or the JSON column's encoder) overflowed Python's stack, a 500; and
        # PostgreSQL's jsonb refuses a NUL character anywhere in it, another 500.
        stack = [(value, 1)]
        while stack:
            item, depth = stack.pop()
            if depth > DEVICE_INFO_DEPTH:
                raise serializers.ValidationError(f"device info is nested deeper than {DEVICE_INFO_DEPTH} levels")
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            elif isinstance(item, list):
                stack.extend((child, depth + 1) for child in item)
            elif isinstance(item, str) and "\x00" in item:
                raise serializers.ValidationError("device info may not contain NUL characters")
        if len(str(value)) > 2000:
            raise serializers.ValidationError("device info is limited to 2000 characters")
        return value


class RunTaskSerializer(Serializer):
    """What a run trains, as a device is told it before and at registration."""

    run = serializers.IntegerField()
    task = serializers.CharField()
    task_config = serializers.DictField()
    manifest_digest = serializers.CharField()
    upload_encoding = serializers.CharField()


class RegisteredSerializer(RunTaskSerializer):
    id = serializers.IntegerField()
    token = serializers.CharField(help_text="shown once; send as `Authorization: Token <token>`")
    name = serializers.CharField(help_text="the client's name")
    status = serializers.CharField(help_text="the client's status")


class EnrollmentSerializer(RunTaskSerializer):
    """What a device learns before it registers: the run it would join and what that run trains."""

    name = serializers.CharField(help_text="the run's name")
    status = serializers.CharField(help_text="the run's status")


class ClientSerializer(ModelSerializer):
    class Meta:
        model = Client
        fields = [
            "id", "run", "name", "status", "progress", "num_examples", "device_info", "accepts",
            "held_version", "bytes_sent", "bytes_received", "created_at", "last_seen",
            "admission", "polled_at", "registered_from",
        ]
        read_only_fields = fields


class TokenSerializer(Serializer):
    id = serializers.IntegerField()
    token = serializers.CharField(help_text="the new token, shown once; the old one no longer works")


class RejectSerializer(Serializer):
    ban = serializers.BooleanField(required=False, default=False, help_text="also ban its registration address")


class HeartbeatSerializer(Serializer):
    status = serializers.CharField(required=False, max_length=32, help_text="what the device says it does")
    progress = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)
    # An id, so at most MAX_ID_DIGITS digits: a larger one overflowed the database's integer (a 500).
    round = serializers.IntegerField(required=False, min_value=1, max_value=10**MAX_ID_DIGITS - 1)


class HeartbeatReplySerializer(Serializer):
    action = serializers.ChoiceField(choices=["continue", "abort", "stop"])
    status = serializers.CharField()


class TaskSerializer(Serializer):
    round = serializers.IntegerField()
    round_number = serializers.IntegerField()
    run = serializers.IntegerField()
    task = serializers.CharField(help_text="the run's task, package.module:attribute")
    task_config = serializers.DictField()
    manifest_digest = serializers.CharField()
    base_version = serializers.IntegerField()
    model_url = serializers.CharField()
    upload_url = serializers.CharField()
    upload_encoding = serializers.CharField()
    deadline = serializers.DateTimeField()
    seed = serializers.IntegerField()
    hyperparameters = serializers.DictField()
