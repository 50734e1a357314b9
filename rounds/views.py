from typing import Any

from django.conf import settings
from django.http import HttpResponse, HttpResponseNotModified
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, permissions, renderers, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from clients.models import Client
from fedcore import codec
from fedcore.strategies import describe_strategies
from fedplatform.api import BODY_ERRORS, ERRORS, ErrorSerializer, IsClient, TensorParser, TensorRenderer
from fedplatform.audit import audit_record
from fedplatform.errors import Conflict, Forbidden, Invalid, NotFound
from fedplatform.prepared import Prepared
from fedplatform.roles import CanOperate, CanView, can_view

from clients.serializers import HeartbeatReplySerializer, HeartbeatSerializer, TaskSerializer

from . import blobs, device_input, downloads, exports, lifecycle, longpoll, protocol, runtask
from .models import ExportStatus, ModelVersion, Round, Run
from .serializers import CONFIG_FIELDS, ModelVersionSerializer, RoundSerializer, RunConfigSerializer, RunSerializer

# The model download's reads, compiled once (fedplatform.prepared): a round's devices all ask at once.
_run_by_pk = Prepared(lambda pk: Run.objects.filter(pk=pk), int)
# With the version's broadcast (rounds.broadcast), which every device download reads: one query.
_version_numbered = Prepared(
    lambda run, number: ModelVersion.objects.select_related("broadcast").filter(run_id=run, number=number), int, int
)
_newest_version = Prepared(
    lambda run: ModelVersion.objects.select_related("broadcast").filter(run_id=run).order_by("-number")[:1], int
)
BINARY = {codec.CONTENT_TYPE: OpenApiTypes.BINARY}


@extend_schema_view(
    list=extend_schema(responses={200: RunSerializer(many=True), **ERRORS}),
    create=extend_schema(responses={201: RunSerializer, **BODY_ERRORS}),
    retrieve=extend_schema(responses={200: RunSerializer, **ERRORS}),
    partial_update=extend_schema(responses={200: RunSerializer, **BODY_ERRORS}),
)
class RunViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Operators create, inspect, reconfigure and control runs. Configuration changes apply from
    the next round that opens."""

    queryset = Run.objects.all()
    serializer_class = RunSerializer
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_permissions(self):
        if self.action == "model":
            return [permissions.IsAuthenticated()]
        return [CanOperate()]

    def perform_content_negotiation(self, request, force=False):
        # ``format`` is also DRF's renderer override (``?format=json``): an export format is
        # answered with a file or with JSON (pending, errors), and an unknown one is a 400, not
        # DRF's 404 for a format no renderer has.
        wanted = request.query_params.get("format") if self.action == "model" else None
        if wanted is None or wanted in ("json", TensorRenderer.format):
            return super().perform_content_negotiation(request, force)
        if wanted not in exports.FORMATS and not force:
            raise Invalid(
                f"unknown format {wanted!r}; choose from {', '.join(exports.FORMATS)}, "
                "or leave it out for the wire format",
                "bad_format",
            )
        return renderers.JSONRenderer(), renderers.JSONRenderer.media_type

    def perform_create(self, serializer: "serializers.BaseSerializer[Run]") -> None:
        config = {k: v for k, v in serializer.validated_data.items() if k in CONFIG_FIELDS}
        serializer.instance = lifecycle.run_create(author=self.request.user.get_username(), **config)

    def perform_update(self, serializer: "serializers.BaseSerializer[Run]") -> None:
        run = serializer.instance
        assert run is not None  # an update is always of the run the view looked up
        lifecycle.run_configure(run=run, changes=dict(serializer.validated_data),
                                author=self.request.user.get_username())
        run.refresh_from_db()

    @extend_schema(responses={200: RunConfigSerializer(many=True), **ERRORS})
    @action(detail=True, methods=["get"])
    def configs(self, request, pk=None):
        """Every configuration version of the run, with its author and the fields it changed."""
        return Response(RunConfigSerializer(self.get_object().configs.all(), many=True).data)

    def _control(self, action_name: str):
        run = lifecycle.run_control(run=self.get_object(), action=action_name, actor=self.request.user.get_username())
        return Response(RunSerializer(run).data)

    @extend_schema(request=None, responses={200: RunSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        return self._control("start")

    @extend_schema(request=None, responses={200: RunSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        return self._control("pause")

    @extend_schema(request=None, responses={200: RunSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        return self._control("resume")

    @extend_schema(request=None, responses={200: RunSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None):
        return self._control("stop")

    @extend_schema(responses={200: RoundSerializer(many=True), **ERRORS})
    @action(detail=True, methods=["get"])
    def rounds(self, request, pk=None):
        run = self.get_object()
        rounds = run.round_set.select_related("base_version", "result_version", "config").prefetch_related(
            "expected", "updates__client")
        return Response(RoundSerializer(rounds, many=True).data)

    @extend_schema(responses={200: ModelVersionSerializer(many=True), **ERRORS})
    @action(detail=True, methods=["get"])
    def versions(self, request, pk=None):
        return Response(ModelVersionSerializer(self.get_object().versions.all(), many=True).data)

    @extend_schema(
        parameters=[
            OpenApiParameter("version", int, description="default: the newest version"),
            OpenApiParameter(
                "base", int,
                description="the version the device holds, as the server broadcast it: the answer may then be "
                "the broadcast delta from it (kind `delta`, header `X-Base-Version`) in the run's download "
                f"encoding, or with `Accept: {downloads.CHAIN_CONTENT_TYPE}` the chain of them; otherwise "
                "the replica's float32 snapshot. `X-Model-Digest` names the bits the device then holds",
            ),
            OpenApiParameter("ETag", str, OpenApiParameter.HEADER, response=[200, 304],
                             description='the version number, quoted (`"5"`); not with `format`'),
            OpenApiParameter("X-Model-Version", int, OpenApiParameter.HEADER, response=[200], required=True),
            OpenApiParameter("X-Base-Version", int, OpenApiParameter.HEADER, response=[200],
                             description="with `base`: the version a delta or chain starts from"),
            OpenApiParameter("X-Model-Digest", str, OpenApiParameter.HEADER, response=[200],
                             description="SHA-256 of the bits a device holds once it has applied the answer"),
            OpenApiParameter("Retry-After", int, OpenApiParameter.HEADER, response=[202], required=True),
            OpenApiParameter(
                "format", str, enum=list(exports.FORMATS),
                description="a standard file instead of the wire format: `safetensors` (tensors by state_dict "
                "name) or `onnx` (where the task gives an example input); `202 export_pending` with "
                "`Retry-After` until the engine has rendered it",
            ),
        ],
        responses={
            (200, codec.CONTENT_TYPE): OpenApiTypes.BINARY,
            (200, downloads.CHAIN_CONTENT_TYPE): OpenApiResponse(OpenApiTypes.BINARY,
                                                                 description="a chain of broadcast deltas"),
            (200, "application/json"): OpenApiTypes.OBJECT,
            (200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY,
                                                               description="with `format`: the file"),
            202: OpenApiResponse(ErrorSerializer,
                                 description="with `format`: the engine renders it; ask again after `Retry-After`"),
            304: OpenApiResponse(description="the `If-None-Match` version is current"),
            **ERRORS,
        },
    )
    @action(detail=True, methods=["get"], renderer_classes=[TensorRenderer, renderers.JSONRenderer])
    def model(self, request, pk=None):
        """The global model: for a device the broadcast replica (its snapshot, or with ``base`` the
        delta or chain from the version it holds, see rounds.downloads), for an operator the exact
        version; ``ETag`` is the version number either way."""
        client = request.user if isinstance(request.user, Client) else None
        run = client.run if client is not None and client.run_id == int(pk) else _run_by_pk.first(int(pk))
        if run is None:
            raise NotFound("no such run", "no_such_run")
        if client is None and not can_view(request.user):
            raise Forbidden("the run's devices, viewers and operators only", "staff_only")
        if client is not None and client.run_id != run.pk:
            raise Forbidden("that model belongs to another run", "not_your_resource")
        wanted = device_input.parse_query_int(request.query_params.get("version"), name="version", code="bad_version")
        base = device_input.parse_query_int(request.query_params.get("base"), name="base", code="bad_base")
        if wanted is not None:
            version = _version_numbered.first(run.pk, wanted)
        else:
            version = _newest_version.first(run.pk)
        if version is None:
            raise NotFound(f"run {run.pk} has no version {wanted}", "no_such_version")
        fmt = request.query_params.get("format")
        if fmt in exports.FORMATS:
            return self._export(version, fmt, downloader=None if client else request.user.get_username())
        etag = f'"{version.number}"'
        if request.headers.get("If-None-Match") == etag:
            return HttpResponseNotModified(headers={"ETag": etag})
        json_wanted = request.accepted_renderer.format == "json"
        # A chain body only to a device that says it reads one: older workers get one blob.
        chains = not json_wanted and downloads.CHAIN_CONTENT_TYPE in request.headers.get("Accept", "")
        body = protocol.model_download(client=client, version=version, base=base, chains=chains)
        headers = {"ETag": etag, "X-Model-Version": str(version.number), "Vary": "Accept"}
        if body.base_version is not None:
            headers["X-Base-Version"] = str(body.base_version)
        if body.digest is not None:
            headers["X-Model-Digest"] = body.digest
        if json_wanted:
            return Response(codec.to_json(codec.decode(body.data)), headers=headers)
        return HttpResponse(body.data, content_type=body.content_type, headers=headers)

    def _export(self, version: ModelVersion, fmt: str, downloader: str | None):
        """The stored file once the engine has rendered it; until then 202 and when to ask again."""
        found = exports.export_request(version=version, fmt=fmt)
        if found.status == ExportStatus.FAILED:
            raise Conflict(f"exporting version {version.number} as {fmt} failed: {found.error}", "export_failed")
        if found.status != ExportStatus.DONE:
            detail = f"version {version.number} is being exported as {fmt}; ask again in a moment"
            return Response({"code": "export_pending", "detail": detail}, status=status.HTTP_202_ACCEPTED,
                            headers={"Retry-After": "1"})
        if downloader is not None:  # an operator took the model out of the platform
            audit_record(actor=downloader, action="run.export", target_type="run", target_id=version.run_id,
                         run_id=version.run_id, details={"version": version.number, "format": fmt})
        # Read whole, as the wire format is: Django's ASGI handler would buffer a file stream anyway.
        return HttpResponse(
            blobs.load(found.blob.name), content_type="application/octet-stream",
            headers={
                "Content-Disposition": f'attachment; filename="{exports.download_name(version, fmt)}"',
                "X-Model-Version": str(version.number),
            },
        )


class TaskInfoSerializer(serializers.Serializer):
    path = serializers.CharField(help_text="package.module:attribute, what a run's task names")
    title = serializers.CharField()
    config_defaults = serializers.DictField(help_text="every configuration key and its default")
    available = serializers.BooleanField(help_text="false: offered but it cannot be imported here")
    error = serializers.CharField(help_text="why it cannot be imported, if it cannot")


class TaskListView(APIView):
    """The tasks a run may name: the built-in, those installed packages declare, FEDPLATFORM_TASKS."""

    permission_classes = [CanView]

    @extend_schema(responses={200: TaskInfoSerializer(many=True), **ERRORS})
    def get(self, request):
        return Response([runtask.describe(path) for path in runtask.offered_tasks()])


class StrategyParamSerializer(serializers.Serializer):
    default = serializers.FloatField()
    min = serializers.FloatField()
    max = serializers.FloatField()
    integer = serializers.BooleanField()
    help = serializers.CharField()


class StrategyInfoSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="what a run's strategy names")
    title = serializers.CharField()
    streaming = serializers.BooleanField(help_text="false: the rule holds every update of a round in memory")
    params = serializers.DictField(child=StrategyParamSerializer(), help_text="what strategy_config may set")


class StrategyListView(APIView):
    """The strategies a run may name, with the parameters its strategy_config may set."""

    permission_classes = [CanView]

    @extend_schema(responses={200: StrategyInfoSerializer(many=True), **ERRORS})
    def get(self, request):
        return Response(describe_strategies())


@extend_schema_view(
    list=extend_schema(responses={200: RoundSerializer(many=True), **ERRORS}),
    retrieve=extend_schema(responses={200: RoundSerializer, **ERRORS}),
)
class RoundViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Rounds with their participants, updates, metrics and bytes (operators)."""

    queryset = Round.objects.select_related("base_version", "result_version", "config").prefetch_related(
        "expected", "updates__client")
    serializer_class = RoundSerializer
    permission_classes = [CanView]


class UpdateAcceptedSerializer(serializers.Serializer):
    round = serializers.IntegerField()
    client = serializers.IntegerField()
    bytes = serializers.IntegerField(help_text="the update's size on the wire")
    sha256 = serializers.CharField(help_text="of the body as received")
    duplicate = serializers.BooleanField(help_text="true: this identical update was already accepted, and counts once")


class UpdateUploadView(APIView):
    """A selected client uploads its update for a round: the delta from the round's base version.

    The body is read here, through a bound (``device_input.read_body``), not through DRF's
    parsers: they skip a body without ``Content-Length`` (chunked, as streaming proxies send it).
    """

    permission_classes = [IsClient]
    parser_classes = [TensorParser]  # the media type, for the schema; the body is read in put()

    @classmethod
    def max_body_bytes(cls, round_id: int, client_id: int) -> int:
        """The body limit, for the ASGI handler to refuse a larger body before buffering it."""
        return protocol.round_upload_limit(round_id, cap=settings.FEDPLATFORM["MAX_UPLOAD_BYTES"])

    @extend_schema(
        request=BINARY,
        parameters=[
            OpenApiParameter("X-Num-Examples", int, OpenApiParameter.HEADER, required=True),
            OpenApiParameter("X-Metrics", str, OpenApiParameter.HEADER, description="JSON object of numbers"),
        ],
        responses={
            201: OpenApiResponse(UpdateAcceptedSerializer, description="accepted"),
            200: OpenApiResponse(UpdateAcceptedSerializer, description="the identical update was already accepted"),
            413: ErrorSerializer,
            **ERRORS,
        },
    )
    def put(self, request, round_id: int, client_id: int):
        client = request.user
        if client.pk != client_id:
            raise Forbidden("a client may upload only its own update", "not_your_resource")
        if request.content_type.split(";")[0].strip() != codec.CONTENT_TYPE:
            raise Invalid(f"send the update as {codec.CONTENT_TYPE}", "bad_content_type")
        # Headers first: a malformed one is refused before the body is read.
        num_examples = device_input.parse_num_examples(request.headers.get("X-Num-Examples"),
                                                       registered=client.num_examples)
        metrics = device_input.parse_metrics(request.headers.get("X-Metrics"))
        limit = self.max_body_bytes(round_id, client_id)
        body = device_input.read_body(request._request, declared=request.META.get("CONTENT_LENGTH"), limit=limit)
        update, created = protocol.update_accept(
            round_id=round_id, client=client, body=body, num_examples=num_examples, metrics=metrics, max_bytes=limit
        )
        reply = {"round": round_id, "client": client.pk, "bytes": update.bytes_wire, "sha256": update.sha256,
                 "duplicate": not created}
        return Response(reply, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class ParkedResponse(Response):
    """A 204 for a device with nothing to do, carrying what the long-poll wrapper (rounds.longpoll)
    needs to park it: the run, the client and the longest it may wait, in seconds."""

    def __init__(self, park: tuple[int, int, float], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.park = park


class _DeviceView(APIView):
    """A device acting on itself: ``clients/{pk}/...`` with its own token."""

    permission_classes = [IsClient]

    def device(self, request, pk: int) -> Client:
        client = request.user
        if client.pk != pk:
            if not Client.objects.filter(pk=pk).exists():
                raise NotFound("no such client", "not_found")
            raise Forbidden("a client may act only as itself", "not_your_resource")
        return client


class DeviceTaskView(_DeviceView):
    """The device's task for now. Served through ``rounds.longpoll``: with ``?wait=S`` the request is
    held, without a thread, until there is work or S seconds pass."""

    @extend_schema(
        operation_id="clients_task_retrieve",
        parameters=[
            OpenApiParameter(
                "wait", int,
                description="seconds to hold the request while there is nothing to do (at most "
                "FEDPLATFORM_LONG_POLL_MAX, 30 by default, and a third of the run's offline_after)",
            ),
            OpenApiParameter("Retry-After", float, OpenApiParameter.HEADER, response=[204], required=True,
                             description="seconds to wait before polling again"),
        ],
        responses={
            200: TaskSerializer,
            204: OpenApiResponse(description="nothing to do now; poll again after `Retry-After` seconds"),
            410: ErrorSerializer,
            **ERRORS,
        },
    )
    def get(self, request, pk: int):
        client = self.device(request, pk)
        # The long-poll wrapper reads ?wait= too; refusing a malformed one is this view's.
        device_input.parse_wait(request.query_params.get("wait"), longest=0)
        task = protocol.task_for(client=client, seen=not longpoll.was_woken(request))
        if task is None:
            retry = settings.FEDPLATFORM["POLL_INTERVAL"]
            # For the long-poll wrapper: which parked polls a run's events wake, and for how long.
            longest = min(settings.FEDPLATFORM["LONG_POLL_MAX"], client.run.offline_after / 3)
            return ParkedResponse((client.run_id, client.pk, longest), status=status.HTTP_204_NO_CONTENT,
                                  headers={"Retry-After": f"{retry:g}"})
        return Response(TaskSerializer(task).data)


class HeartbeatView(_DeviceView):
    """Liveness and training progress; the answer says whether to continue, abort or stop."""

    @extend_schema(operation_id="clients_heartbeat_create", request=HeartbeatSerializer,
                   responses={200: HeartbeatReplySerializer, **BODY_ERRORS})
    def post(self, request, pk: int):
        client = self.device(request, pk)
        data = HeartbeatSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        next_action = protocol.heartbeat(
            client=client, progress=data.validated_data.get("progress"), round_id=data.validated_data.get("round")
        )
        return Response({"action": next_action, "status": client.status})
