"""Who may call what: every endpoint the server routes, for every kind of caller, gets the status
docs/api.md documents.

The endpoints are enumerated from the URL configuration, so an endpoint added without a row here
fails ``test_every_routed_endpoint_has_a_row``. Each row is tried once per caller, each try in a
savepoint rolled back afterwards, so one caller's kick or stop does not change what the next sees.

Callers: ``anonymous``; ``self``, the device the path names (``dev``), with its own token;
``other``, another device of the same run; ``kicked``, a device an operator kicked, with its
token; ``viewer`` and ``operator``, users who are not staff and hold that role.
"""
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from django.db import transaction
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from clients.models import Admission, Client
from clients.services import client_kick
from fedcore import codec
from rounds.models import Run, RunStatus

from protocol_helpers import Device, delta_body

pytestmark = pytest.mark.django_db
CALLERS = ("anonymous", "self", "other", "kicked", "viewer", "operator")
# Django's own pages, outside the platform's API and dashboard: the admin (staff only, Django's
# permissions) and the browsable API's login (Django's LoginView).
NOT_IN_THE_MATRIX = ("admin:", "rest_framework:")


@dataclass
class World:
    run: Run
    dev: Device
    other: Device
    kicked: Device
    task: dict
    apis: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Row:
    path: Callable[[World], str]
    statuses: dict  # caller -> status
    body: Callable[[World, str], object] | None = None  # (world, caller) -> JSON or bytes
    prepare: Callable[[World], None] | None = None


def everyone(status: int, **overrides) -> dict:
    return {caller: overrides.get(caller, status) for caller in CALLERS}


def devices_only(self_status: int, other: int = 403) -> dict:
    return {"anonymous": 401, "self": self_status, "other": other, "kicked": 403, "viewer": 403, "operator": 403}


def operators_only(status: int, viewer: int = 403) -> dict:
    return {"anonymous": 401, "self": 403, "other": 403, "kicked": 403, "viewer": viewer, "operator": status}


def readers(status: int = 200) -> dict:
    return operators_only(status, viewer=status)


def _pending(world: World) -> None:
    Client.objects.filter(pk=world.dev.id).update(admission=Admission.PENDING)


def _paused_dev(world: World) -> None:
    world.apis["operator"].post(f"/api/v1/clients/{world.dev.id}/pause/")


def _run_status(status: str) -> Callable[[World], None]:
    return lambda world: Run.objects.filter(pk=world.run.pk).update(status=status)


def _upload(world: World, caller: str) -> bytes:
    return delta_body(world.run, world.task, 0.01)[0]


client = lambda suffix="": lambda w: f"/api/v1/clients/{w.dev.id}/{suffix}"  # noqa: E731
run = lambda suffix="": lambda w: f"/api/v1/runs/{w.run.pk}/{suffix}"  # noqa: E731

MATRIX: dict[tuple[str, str], Row] = {
    # Devices: registration and enrollment need no credentials (a kicked token is still refused).
    ("client-list", "POST"): Row(lambda w: "/api/v1/clients/", everyone(201, kicked=403),
                                 body=lambda w, c: {"name": "again", "run": w.run.pk, "num_examples": 10}),
    ("client-enrollment", "GET"): Row(lambda w: f"/api/v1/clients/enrollment/?run={w.run.pk}",
                                      everyone(200, kicked=403)),
    ("client-task", "GET"): Row(client("task/"), devices_only(200)),
    ("client-heartbeat", "POST"): Row(client("heartbeat/"), devices_only(200), body=lambda w, c: {"progress": 0.5}),
    ("client-token", "POST"): Row(client("token/"), devices_only(200)),
    ("update-upload", "PUT"): Row(lambda w: w.task["upload_url"], devices_only(201), body=_upload),
    ("run-model", "GET"): Row(run("model/"), {**readers(), "self": 200, "other": 200}),
    # A device reads and leaves itself; operators read every client and kick.
    ("client-detail", "GET"): Row(client(), {**readers(), "self": 200}),
    ("client-detail", "DELETE"): Row(client(), {**operators_only(204), "self": 204}),
    ("client-list", "GET"): Row(lambda w: "/api/v1/clients/", readers()),
    ("client-pause", "POST"): Row(client("pause/"), operators_only(200)),
    ("client-resume", "POST"): Row(client("resume/"), operators_only(200), prepare=_paused_dev),
    ("client-approve", "POST"): Row(client("approve/"), operators_only(200), prepare=_pending),
    ("client-reject", "POST"): Row(client("reject/"), operators_only(200), prepare=_pending, body=lambda w, c: {}),
    ("client-ban", "POST"): Row(client("ban/"), operators_only(200)),
    ("client-revoke", "POST"): Row(client("revoke/"), operators_only(200)),
    # Runs, rounds and tasks: viewers read, operators also act.
    ("api-root", "GET"): Row(lambda w: "/api/v1/", readers()),
    ("task-list", "GET"): Row(lambda w: "/api/v1/tasks/", readers()),
    ("strategy-list", "GET"): Row(lambda w: "/api/v1/strategies/", readers()),
    ("run-list", "GET"): Row(lambda w: "/api/v1/runs/", readers()),
    ("run-list", "POST"): Row(lambda w: "/api/v1/runs/", operators_only(201),
                              body=lambda w, c: {"name": "m", "rounds": 1}),
    ("run-detail", "GET"): Row(run(), readers()),
    ("run-detail", "PATCH"): Row(run(), operators_only(200), body=lambda w, c: {"rounds": 4}),
    ("run-detail", "PUT"): Row(run(), operators_only(405), body=lambda w, c: {"rounds": 4}),  # PATCH only
    ("run-start", "POST"): Row(run("start/"), operators_only(200), prepare=_run_status(RunStatus.DRAFT)),
    ("run-pause", "POST"): Row(run("pause/"), operators_only(200)),
    ("run-resume", "POST"): Row(run("resume/"), operators_only(200), prepare=_run_status(RunStatus.PAUSED)),
    ("run-stop", "POST"): Row(run("stop/"), operators_only(200)),
    ("run-configs", "GET"): Row(run("configs/"), readers()),
    ("run-rounds", "GET"): Row(run("rounds/"), readers()),
    ("run-versions", "GET"): Row(run("versions/"), readers()),
    ("round-list", "GET"): Row(lambda w: "/api/v1/rounds/", readers()),
    ("round-detail", "GET"): Row(lambda w: f"/api/v1/rounds/{w.task['round']}/", readers()),
    # The schema and its viewers are public (a kicked token is refused like anywhere else).
    ("schema", "GET"): Row(lambda w: "/api/schema/", everyone(200, kicked=403)),
    ("swagger-ui", "GET"): Row(lambda w: "/api/docs/", everyone(200, kicked=403)),
    ("redoc", "GET"): Row(lambda w: "/api/redoc/", everyone(200, kicked=403)),
    # The dashboard knows sessions, not device tokens: everyone without a role is sent to log in.
    ("dashboard:index", "GET"): Row(lambda w: "/", everyone(302, viewer=200, operator=200)),
    ("dashboard:run", "GET"): Row(lambda w: f"/runs/{w.run.pk}/", everyone(302, viewer=200, operator=200)),
    ("dashboard:snapshot", "GET"): Row(lambda w: f"/runs/{w.run.pk}/snapshot.json",
                                       everyone(302, viewer=200, operator=200)),
    ("dashboard:login", "GET"): Row(lambda w: "/login/", everyone(200)),
    ("dashboard:login", "POST"): Row(lambda w: "/login/", everyone(200),
                                     body=lambda w, c: {"username": "x", "password": "y"}),
    ("dashboard:login", "PUT"): Row(lambda w: "/login/", everyone(200)),  # Django's form view: PUT is its POST
    ("dashboard:logout", "POST"): Row(lambda w: "/logout/", everyone(302)),
}


# HEAD answers as GET does, without the body; OPTIONS describes. Neither acts.
IMPLIED = {"HEAD", "OPTIONS"}


def _methods(pattern: URLPattern) -> set[str]:
    callback = pattern.callback
    actions = getattr(callback, "actions", None)
    if actions:  # a router's viewset route
        return {m.upper() for m in actions} - IMPLIED
    cls = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    if cls is not None:
        return {m.upper() for m in cls.http_method_names if hasattr(cls, m) and m not in ("options", "head")}
    allowed = {"dashboard:index": {"GET"}, "dashboard:run": {"GET"}, "dashboard:snapshot": {"GET"}}
    return allowed[pattern.name if ":" in (pattern.name or "") else f"dashboard:{pattern.name}"]


def routed_endpoints() -> set[tuple[str, str]]:
    found = set()

    def walk(patterns, namespace: str) -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, f"{namespace}{entry.namespace}:" if entry.namespace else namespace)
            elif isinstance(entry, URLPattern) and entry.name:
                name = namespace + entry.name
                if name.startswith(NOT_IN_THE_MATRIX):
                    continue
                if "format" in entry.pattern.regex.groupindex:
                    continue  # the router's ".json" twin of a route already listed
                found.update((name, method) for method in _methods(entry))

    walk(get_resolver().url_patterns, "")
    return found


def test_every_routed_endpoint_has_a_row():
    routed = routed_endpoints()
    assert routed - set(MATRIX) == set(), "endpoints without a row in the authorization matrix"
    assert set(MATRIX) - routed == set(), "rows for endpoints that are not routed"


@pytest.fixture
def world(run, role_user) -> World:
    dev, other, kicked = Device(run.pk, "dev"), Device(run.pk, "other"), Device(run.pk, "kicked")
    task = dev.task().json()  # dev and other are selected for round 1 (two per round)
    client_kick(client=Client.objects.get(pk=kicked.id), actor="setup")
    world = World(run=run, dev=dev, other=other, kicked=kicked, task=task)
    world.apis = {"anonymous": APIClient(), "self": dev.api, "other": other.api, "kicked": kicked.api}
    for role in ("viewer", "operator"):
        api = APIClient()
        api.force_login(role_user(f"{role}-user", role))
        world.apis[role] = api
    return world


class _Rollback(Exception):
    pass


def _call(world: World, row: Row, method: str, caller: str) -> int:
    api = world.apis[caller]
    body = row.body(world, caller) if row.body else None
    path = row.path(world)
    if isinstance(body, bytes):
        response = api.generic(method, path, body, content_type=codec.CONTENT_TYPE,
                               HTTP_X_NUM_EXAMPLES="100", HTTP_X_METRICS="{}")
    else:
        send = getattr(api, method.lower())
        response = send(path, body, format="json") if body is not None else send(path)
    return response.status_code


@pytest.mark.parametrize(("name", "method"), sorted(MATRIX))
def test_each_caller_gets_the_documented_status(world, name, method):
    row = MATRIX[(name, method)]
    got = {}
    for caller in CALLERS:
        try:
            with transaction.atomic():
                if row.prepare:
                    row.prepare(world)
                got[caller] = _call(world, row, method, caller)
                raise _Rollback
        except _Rollback:
            pass
    assert got == row.statuses
