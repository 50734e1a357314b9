from django.conf import settings
from django.utils.crypto import constant_time_compare
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from fedplatform.api import ErrorSerializer, IsClientSelfOrStaff
from fedplatform.errors import Conflict, Forbidden, NotFound
from rounds.models import TERMINAL_RUN_STATUSES, Run

from . import services
from .models import Client
from .serializers import (
    ClientSerializer,
    RegisteredSerializer,
    RegisterSerializer,
)

ERRORS = {code: ErrorSerializer for code in (400, 401, 403, 404, 409)}


def _pick_run(run_id: int | None) -> Run:
    if run_id is not None:
        run = Run.objects.filter(pk=run_id).first()
        if run is None:
            raise NotFound(f"run {run_id} does not exist", "no_such_run")
        return run
    run = Run.objects.exclude(status__in=TERMINAL_RUN_STATUSES).order_by("-pk").first()
    if run is None:
        raise Conflict("no run is taking clients right now", "no_active_run")
    return run


class ClientViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Devices register and leave; operators list, pause, resume and kick them. (A device's task
    and heartbeats belong to its run's rounds: ``rounds.views``.)"""

    queryset = Client.objects.select_related("run")
    serializer_class = ClientSerializer

    def get_permissions(self):
        if self.action == "create":
            return [permissions.AllowAny()]
        if self.action in ("retrieve", "destroy"):
            return [IsClientSelfOrStaff()]
        return [permissions.IsAdminUser()]

    def get_object(self) -> Client:
        client = Client.objects.select_related("run").filter(pk=self.kwargs["pk"]).first()
        if client is None:
            raise NotFound("no such client", "not_found")
        self.check_object_permissions(self.request, client)
        return client

    def permission_denied(self, request, message=None, code=None):
        if request.user and isinstance(request.user, Client) and self.action not in ("create",):
            raise Forbidden(message or "not allowed", "not_your_resource")
        super().permission_denied(request, message=message, code=code)

    @extend_schema(request=RegisterSerializer, responses={201: RegisteredSerializer, **ERRORS}, auth=[])
    def create(self, request):
        data = RegisterSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        key = settings.FEDPLATFORM["ENROLLMENT_KEY"]
        if key and not constant_time_compare(values.get("enrollment_key", ""), key):
            raise Forbidden("registration needs a valid enrollment key", "bad_enrollment_key")
        run = _pick_run(values.get("run"))
        client, token = services.client_register(
            run=run,
            name=values["name"],
            num_examples=values["num_examples"],
            device_info=values["device"],
            accepts=values["accepts"],
        )
        body = {
            "id": client.pk,
            "token": token,
            "name": client.name,
            "status": client.status,
            "run": run.pk,
            "arch": run.arch,
            "dataset": run.dataset,
            "upload_encoding": run.upload_encoding,
        }
        return Response(body, status=status.HTTP_201_CREATED)

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

    @extend_schema(request=None, responses={200: ClientSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        client = self.get_object()
        services.client_pause(client=client, actor=request.user.get_username())
        return Response(ClientSerializer(client).data)

    @extend_schema(request=None, responses={200: ClientSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        client = self.get_object()
        services.client_resume(client=client, actor=request.user.get_username())
        return Response(ClientSerializer(client).data)
