from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from fedplatform.api import BODY_ERRORS, ERRORS, IsClient, IsClientSelfOrOperator
from fedplatform.errors import Forbidden, NotFound
from fedplatform.roles import CanOperate, CanView

from . import services
from .models import Client
from .serializers import ClientSerializer, RejectSerializer, TokenSerializer


@extend_schema_view(
    list=extend_schema(responses={200: ClientSerializer(many=True), **ERRORS}),
    retrieve=extend_schema(responses={200: ClientSerializer, **ERRORS}),
)
class ClientViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """What concerns a client alone: operators list, pause, resume, approve, reject, ban, revoke
    and kick clients; a device reads itself, rotates its token and leaves.

    Joining needs a run, and the clients app knows nothing of runs, so registration and
    enrollment are a subclass's (``rounds.enrollment``), which is what the API serves."""

    queryset = Client.objects.select_related("run")
    serializer_class = ClientSerializer
    # Actions anyone may call, without credentials (a subclass's: registration, enrollment).
    open_actions: frozenset[str] = frozenset()

    def get_permissions(self):
        if self.action is None:
            # A method the path does not offer: DRF checks permissions before it answers 405, so
            # DELETE clients/enrollment/ without credentials was a 401 on a path that needs none.
            # Nothing runs for it but the 405.
            return []
        if self.action in self.open_actions:
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
        if request.user and isinstance(request.user, Client) and self.action not in self.open_actions:
            raise Forbidden(message or "not allowed", "not_your_resource")
        super().permission_denied(request, message=message, code=code)

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
