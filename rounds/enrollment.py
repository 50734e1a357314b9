"""Joining a run: device registration (``POST clients/``) and enrollment (``GET clients/enrollment/``).

Both need the run a device would join and the task it trains, so they live here, on top of the
clients app's own viewset (``clients.views.ClientViewSet``: what concerns a client alone). The
API serves this subclass at the clients' URLs, so the clients app never imports ``rounds``.
"""
from django.conf import settings
from django.utils.crypto import constant_time_compare
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle

from clients import services
from clients.serializers import EnrollmentSerializer, RegisteredSerializer, RegisterSerializer
from clients.views import ClientViewSet
from fedplatform.api import BODY_ERRORS, ERRORS
from fedplatform.errors import Conflict, Forbidden, Invalid, NotFound
from fedplatform.prepared import Prepared

from .models import TERMINAL_RUN_STATUSES, Run


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


class RunClientViewSet(ClientViewSet):
    """Devices register and leave; operators list, pause, resume and kick them. (A device's task
    and heartbeats belong to its run's rounds: ``rounds.views``.)"""

    open_actions = frozenset({"create", "enrollment"})

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
