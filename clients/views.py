from django.conf import settings
from django.utils.crypto import constant_time_compare
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle

from fedplatform.api import BODY_ERRORS, ERRORS, IsClient, IsClientSelfOrOperator
from fedplatform.errors import Conflict, Forbidden, Invalid, NotFound
from fedplatform.prepared import Prepared
from fedplatform.roles import CanOperate, CanView
from rounds.models import TERMINAL_RUN_STATUSES, Run

from . import services
from .models import Client
from .serializers import (
    ClientSerializer,
    EnrollmentSerializer,
    RegisteredSerializer,
    RegisterSerializer,
    RejectSerializer,
    TokenSerializer,
)


def _address(request) -> str | None:
    """The caller's address as the throttles see it (``FEDPLATFORM_NUM_PROXIES`` hops back)."""
    return services.normal_address(BaseThrottle().get_ident(request))


# Registration's reads, compiled once (fedplatform.prepared): devices may join by the hundred a second.
_run_by_pk = Prepared(lambda pk: Run.objects.filter(pk=pk), int)


def _pick_run(run_id: int | None) -> Run:
    if run_id is not None:
        run = _run_by_pk.first(run_id)
        if run is None:
            raise NotFound(f"run {run_id} does not exist", "no_such_run")
        return run
    run = Run.objects.exclude(status__in=TERMINAL_RUN_STATUSES).order_by("-pk").first()
    if run is None:
        raise Conflict("no run is taking clients right now", "no_active_run")
    return run


def _check_enrollment_key(given: str) -> None:
    key = settings.FEDPLATFORM["ENROLLMENT_KEY"]
    if key and not constant_time_compare(given or "", key):
        raise Forbidden("registration needs a valid enrollment key", "bad_enrollment_key")


def _run_task(run: Run) -> dict:
    return {"run": run.pk, "task": run.task, "task_config": run.task_config,
            "manifest_digest": run.manifest_digest, "upload_encoding": run.upload_encoding}


def _check_model(run: Run, task: str | None, digest: str | None) -> None:
    """A device must build the run's model: the same manifest, whatever it calls its task."""
    if digest is not None and digest != run.manifest_digest:
        raise Conflict(
            f"this device's model (manifest {digest}) is not run {run.pk}'s ({run.task}, manifest "
            f"{run.manifest_digest}); load the run's task with the run's configuration", "manifest_mismatch",
        )
    if digest is None and task is not None and task != run.task:
        raise Conflict(f"run {run.pk} trains {run.task!r}, not {task!r}", "task_mismatch")


@extend_schema_view(
    list=extend_schema(responses={200: ClientSerializer(many=True), **ERRORS}),
    retrieve=extend_schema(responses={200: ClientSerializer, **ERRORS}),
)
class ClientViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Devices register and leave; operators list, pause, resume and kick them. (A device's task
    and heartbeats belong to its run's rounds: ``rounds.views``.)"""

    queryset = Client.objects.select_related("run")
    serializer_class = ClientSerializer

    def get_permissions(self):
        if self.action is None:
            # A method the path does not offer: DRF checks permissions before it answers 405, so
            # DELETE clients/enrollment/ without credentials was a 401 on a path that needs none.
            # Nothing runs for it but the 405.
            return []
        if self.action in ("create", "enrollment"):
            return [permissions.AllowAny()]
        if self.action in ("retrieve", "destroy"):
            return [IsClientSelfOrOperator()]
        if self.action == "token":
            return [IsClient()]
        if self.action == "list":
            return [CanView()]
        return [CanOperate()]

    def get_object(self) -> Client:
        client = Client.objects.select_related("run").filter(pk=self.kwargs["pk"]).first()
        if client is None:
            raise NotFound("no such client", "not_found")
        self.check_object_permissions(self.request, client)
        return client

    def permission_denied(self, request, message=None, code=None):
        if request.user and isinstance(request.user, Client) and self.action not in ("create", "enrollment"):
            raise Forbidden(message or "not allowed", "not_your_resource")
        super().permission_denied(request, message=message, code=code)

    @extend_schema(request=RegisterSerializer, responses={201: RegisteredSerializer, **BODY_ERRORS}, auth=[])
    def create(self, request):
        data = RegisterSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        _check_enrollment_key(values.get("enrollment_key", ""))
        address = _address(request)  # client_register refuses a banned one
        run = _pick_run(values.get("run"))
        _check_model(run, values.get("task"), values.get("manifest_digest"))
        client, token = services.client_register(
            run=run,
            name=values["name"],
            num_examples=values["num_examples"],
            device_info=values["device"],
            accepts=values["accepts"],
            address=address,
        )
        body = {
            "id": client.pk,
            "token": token,
            "name": client.name,
            "status": client.status,
            **_run_task(run),
        }
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[OpenApiParameter("run", int, required=False, description="default: the newest active run"),
                    OpenApiParameter("X-Enrollment-Key", str, OpenApiParameter.HEADER, required=False)],
        responses={200: EnrollmentSerializer, **ERRORS}, auth=[],
    )
    @action(detail=False, methods=["get"])
    def enrollment(self, request):
        """The run a device would join and the task it trains, so the device can load the task
        and its data before it registers (registration sends the example count)."""
        _check_enrollment_key(request.headers.get("X-Enrollment-Key", ""))
        services.registration_check(address=_address(request))
        run_id = request.query_params.get("run")
        if run_id is not None and not (run_id.isascii() and run_id.isdigit() and 0 < len(run_id) <= 12):
            raise Invalid("run must be a positive integer", "bad_parameter")
        run = _pick_run(int(run_id) if run_id is not None else None)
        if run.is_terminal:
            raise Conflict(f"run {run.pk} is {run.status} and takes no clients", "run_closed")
        return Response({**_run_task(run), "name": run.name, "status": run.status})

    @extend_schema(
        responses={204: OpenApiResponse(description="left (device) or kicked (operator)"), **ERRORS},
    )
    def destroy(self, request, pk=None):
        client = self.get_object()
        if request.user == client:
            services.client_leave(client=client)
        else:
            services.client_kick(client=client, actor=request.user.get_username())
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _control(self, name: str, **kwargs) -> Response:
        client = self.get_object()
        # The service leaves ``client`` as it made it (a round the change let open comes after).
        getattr(services, f"client_{name}")(client=client, actor=self.request.user.get_username(), **kwargs)
        return Response(ClientSerializer(client).data)

    @extend_schema(request=None, responses={200: ClientSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        return self._control("pause")

    @extend_schema(request=None, responses={200: ClientSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        return self._control("resume")

    @extend_schema(request=None, responses={200: ClientSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        """Admit a pending client: from now on rounds may select it."""
        return self._control("approve")

    @extend_schema(request=RejectSerializer, responses={200: ClientSerializer, **BODY_ERRORS})
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        """Refuse a pending client (its token answers 403 kicked); ``ban`` also bans its address."""
        data = RejectSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return self._control("reject", ban=data.validated_data["ban"])

    @extend_schema(request=None, responses={200: ClientSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def ban(self, request, pk=None):
        """Kick the client (if it is still there) and ban the address it registered from."""
        return self._control("ban")

    @extend_schema(request=None, responses={200: ClientSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        """Revoke the client's token (401 from then on); the client leaves its run."""
        return self._control("revoke")

    @extend_schema(request=None, responses={200: TokenSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def token(self, request, pk=None):
        """A device replaces its own token: the answer holds the new one, the old one stops working."""
        client = self.get_object()
        return Response({"id": client.pk, "token": services.client_rotate_token(client=client)})
