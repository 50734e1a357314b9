"""Device identity (hashed, rotatable, revocable tokens) and admission (approval, bans, liveness
before selection, stale registrations swept away)."""
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from clients import services
from clients.models import Admission, Ban, Client, ClientStatus
from fedplatform.models import AuditEntry
from rounds import engine
from rounds.models import Round


pytestmark = pytest.mark.django_db


def _register(run, name: str = "dev", **extra):
    return APIClient().post("/api/v1/clients/", {"name": name, "run": run.pk, "num_examples": 10, **extra},
                            format="json")


def test_no_column_of_the_clients_table_holds_a_token_in_clear(device):
    dev = device("alpha")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {Client._meta.db_table}")
        rows = cursor.fetchall()
    assert rows and not any(dev.token in str(value) for row in rows for value in row)


def test_a_device_rotates_its_token_and_the_old_one_stops_working(device):
    dev = device("alpha")
    old = dev.token
    response = dev.api.post(f"/api/v1/clients/{dev.id}/token/")
    assert response.status_code == 200
    new = response.json()["token"]
    assert new != old and response.json()["id"] == dev.id
    assert dev.api.get(f"/api/v1/clients/{dev.id}/").status_code == 401  # still sending the old one
    dev.api.credentials(HTTP_AUTHORIZATION=f"Token {new}")
    assert dev.api.get(f"/api/v1/clients/{dev.id}/").status_code == 200
    assert dev.api.post(f"/api/v1/clients/{dev.id}/heartbeat/", {}, format="json").status_code == 200


def test_a_device_cannot_rotate_another_devices_token(device):
    alpha, beta = device("alpha"), device("beta")
    response = alpha.api.post(f"/api/v1/clients/{beta.id}/token/")
    assert response.status_code == 403 and response.json()["code"] == "not_your_resource"
    assert beta.api.get(f"/api/v1/clients/{beta.id}/").status_code == 200


def test_an_operator_revokes_a_token_and_the_client_leaves(device, staff_api):
    dev = device("alpha")
    response = staff_api.post(f"/api/v1/clients/{dev.id}/revoke/")
    assert response.status_code == 200 and response.json()["status"] == ClientStatus.LEFT
    answer = dev.task()
    assert answer.status_code == 401 and answer.json()["code"] == "authentication_failed"
    assert AuditEntry.objects.filter(action="client.revoke", target_id=dev.id, actor="olivia").exists()


def test_with_approval_required_a_pending_client_polls_but_is_never_selected(run, device, staff_api, settings):
    settings.FEDPLATFORM = {**settings.FEDPLATFORM, "REQUIRE_APPROVAL": True}
    alpha, beta = device("alpha"), device("beta")  # each polls once
    assert staff_api.get(f"/api/v1/clients/{alpha.id}/").json()["admission"] == "pending"
    assert alpha.task().status_code == 204 and beta.task().status_code == 204
    assert not Round.objects.filter(run=run).exists()

    assert staff_api.post(f"/api/v1/clients/{alpha.id}/approve/").json()["admission"] == "approved"
    assert not Round.objects.filter(run=run).exists()  # one approved, two needed
    staff_api.post(f"/api/v1/clients/{beta.id}/approve/")
    (rnd,) = Round.objects.filter(run=run)
    assert sorted(rnd.expected.values_list("pk", flat=True)) == sorted([alpha.id, beta.id])
    assert alpha.task().status_code == 200
    approved = AuditEntry.objects.filter(action="client.approve").values_list("target_id", flat=True)
    assert list(approved) == [beta.id, alpha.id]


def test_approving_a_client_that_is_not_pending_is_a_conflict(device, staff_api):
    dev = device("alpha")
    response = staff_api.post(f"/api/v1/clients/{dev.id}/approve/")
    assert response.status_code == 409 and response.json()["code"] == "not_pending"


def test_a_rejected_client_is_refused_and_with_ban_its_address_cannot_register(run, device, staff_api, settings):
    settings.FEDPLATFORM = {**settings.FEDPLATFORM, "REQUIRE_APPROVAL": True}
    dev = device("alpha")
    response = staff_api.post(f"/api/v1/clients/{dev.id}/reject/", {"ban": True}, format="json")
    assert response.status_code == 200 and response.json()["admission"] == "rejected"
    answer = dev.task()
    assert answer.status_code == 403 and answer.json()["code"] == "kicked"
    again = _register(run)
    assert again.status_code == 403 and again.json()["code"] == "banned"


def test_a_kick_with_a_ban_keeps_the_device_from_registering_again(run, device, staff_api):
    dev = device("alpha")
    assert Client.objects.get(pk=dev.id).registered_from == "127.0.0.1"
    assert staff_api.post(f"/api/v1/clients/{dev.id}/ban/").json()["status"] == ClientStatus.KICKED
    assert dev.task().json()["code"] == "kicked"
    for response in (_register(run), APIClient().get(f"/api/v1/clients/enrollment/?run={run.pk}")):
        assert response.status_code == 403 and response.json()["code"] == "banned"
    # From another address (REMOTE_ADDR) it is let in; lifting the ban lets the first one in again.
    other = APIClient(REMOTE_ADDR="10.1.2.3").post("/api/v1/clients/", {"name": "x", "run": run.pk, "num_examples": 3},
                                                   format="json")
    assert other.status_code == 201
    Ban.objects.all().delete()
    assert _register(run).status_code == 201


def test_a_kick_without_a_ban_lets_the_device_register_again(run, device, staff_api):
    dev = device("alpha")
    assert staff_api.delete(f"/api/v1/clients/{dev.id}/").status_code == 204
    assert not Ban.objects.exists()
    assert _register(run).status_code == 201


def test_a_forwarded_for_header_does_not_let_a_device_pick_its_address(run, device, staff_api):
    dev = device("alpha")
    staff_api.post(f"/api/v1/clients/{dev.id}/ban/")
    response = APIClient().post("/api/v1/clients/", {"name": "x", "run": run.pk, "num_examples": 3}, format="json",
                                HTTP_X_FORWARDED_FOR="10.9.9.9")
    assert response.status_code == 403 and response.json()["code"] == "banned"


def test_a_registration_flood_that_never_polls_is_never_selected(run, device):
    flood = [_register(run, f"fake-{i}") for i in range(30)]
    assert all(r.status_code == 201 for r in flood)
    assert not Round.objects.filter(run=run).exists()  # thirty registrations open nothing
    alpha = device("alpha")
    assert not Round.objects.filter(run=run).exists()  # one proven client, two needed
    beta = device("beta")
    (rnd,) = Round.objects.filter(run=run)
    assert sorted(rnd.expected.values_list("pk", flat=True)) == sorted([alpha.id, beta.id])


def test_the_sweep_deletes_registrations_that_never_polled(run, device, monkeypatch):
    polled = device("polled")
    silent = device("silent", poll=False)
    fresh = device("fresh", poll=False)
    old = timezone.now() - timedelta(hours=2)
    Client.objects.filter(pk__in=[polled.id, silent.id]).update(created_at=old)
    monkeypatch.setattr(services, "_last_prune", 0.0)
    engine.sweep_all()
    remaining = set(Client.objects.values_list("pk", flat=True))
    assert polled.id in remaining and fresh.id in remaining
    assert silent.id not in remaining


def test_the_first_poll_is_what_proves_liveness(device):
    dev = device("alpha", poll=False)
    assert Client.objects.get(pk=dev.id).polled_at is None
    dev.api.post(f"/api/v1/clients/{dev.id}/heartbeat/", {}, format="json")
    assert Client.objects.get(pk=dev.id).polled_at is None  # a heartbeat is not asking for work
    dev.task()
    client = Client.objects.get(pk=dev.id)
    assert client.polled_at is not None and client.admission == Admission.APPROVED
